rule detect_stars:
    input:
        settings=SETTINGS["detect"],
        frame=frame_path,
    output:
        catalog=f"{RESULTS}/catalogs/{{frame}}.csv",
        stats=f"{RESULTS}/catalogs/{{frame}}.json",
        # hot pixels and cosmic rays, found once here for every photometry against this frame
        defects=f"{RESULTS}/defects/{{frame}}.csv",
        provenance=f"{RESULTS}/provenance/detect_stars/{{frame}}.json",
    params:
        settings=config["detect"],
        algo=ALGO["detect"],
    log:
        f"{RESULTS}/logs/detect_stars/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/detect_stars/{{frame}}.tsv"
    # every frame's detection before the normalize jobs (which Snakemake's greedy scheduler would
    # otherwise prefer, for their larger inputs): the normalize jobs, the longer ones, then run side
    # by side to the end instead of one of them alone at the end of the run
    priority: 1
    threads: 1
    resources:
        mem_mb=frame_mb(6),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/detect_stars.py"
