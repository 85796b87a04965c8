rule fit_scale:
    input:
        settings=SETTINGS["scale"],
        photometry=f"{RESULTS}/photometry/{{frame}}.csv",
        aperture=f"{RESULTS}/photometry/{{frame}}.json",
        choice=reference_choice,
    output:
        scale=f"{RESULTS}/scale/{{frame}}.json",
        provenance=f"{RESULTS}/provenance/fit_scale/{{frame}}.json",
        # it shows the photometry and the fit: redrawn whenever the scale is made
        **graph("photometry", "Photometry graphs"),
    params:
        reference=reference_name,
        settings=config["scale"],
        algo=ALGO["scale"],
        graphs=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/fit_scale/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_scale/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=500,  # tables of a few thousand stars
        runtime=5,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/fit_scale.py"
