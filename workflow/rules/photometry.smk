rule measure_photometry:
    input:
        frame=frame_path,
        reference=reference_path,
        catalog=f"{RESULTS}/catalogs/{{frame}}.csv",
        ref_catalog=reference_file("catalogs/{}.csv"),
        stats=lambda wc: [f"{RESULTS}/catalogs/{wc.frame}.json", reference_file("catalogs/{}.json")(wc)],
        defects=lambda wc: [f"{RESULTS}/defects/{wc.frame}.csv", reference_file("defects/{}.csv")(wc)],
    output:
        table=f"{RESULTS}/photometry/{{frame}}.csv",
        info=f"{RESULTS}/photometry/{{frame}}.json",
    params:
        match=config["match"],
        settings=config["photometry"],
        algo=ALGO["photometry"],
    log:
        f"{RESULTS}/logs/measure_photometry/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure_photometry/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(5),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/measure_photometry.py"
