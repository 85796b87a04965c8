rule sample_gradient:
    # box means of m*T - R away from the stars and trails of both frames
    input:
        settings=SETTINGS["samples"],
        frame=frame_path,
        reference=reference_path,
        scale=f"{RESULTS}/scale/{{frame}}.json",
        photometry=f"{RESULTS}/photometry/{{frame}}.json",
        stats=f"{RESULTS}/catalogs/{{frame}}.json",
        catalog=f"{RESULTS}/catalogs/{{frame}}.csv",
        defects=f"{RESULTS}/defects/{{frame}}.csv",
        ref_stats=reference_file("catalogs/{}.json"),
        ref_catalog=reference_file("catalogs/{}.csv"),
        ref_defects=reference_file("defects/{}.csv"),
    output:
        samples=f"{RESULTS}/samples/{{frame}}.csv",
        record=f"{RESULTS}/samples/{{frame}}.json",
        provenance=f"{RESULTS}/provenance/sample_gradient/{{frame}}.json",
        **graph("samples", "Sample maps"),
    params:
        settings=config["samples"],
        algo=ALGO["samples"],
        graphs=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/sample_gradient/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_gradient/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(7),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/sample_gradient.py"


rule fit_gradient:
    # the spline through the samples: reads the samples table, not the frames
    input:
        settings=SETTINGS["gradient"],
        samples=f"{RESULTS}/samples/{{frame}}.csv",
        record=f"{RESULTS}/samples/{{frame}}.json",
    output:
        gradient=f"{RESULTS}/gradient/{{frame}}.fits",
        curvature=f"{RESULTS}/gradient/{{frame}}_curvature.fits",
        provenance=f"{RESULTS}/provenance/fit_gradient/{{frame}}.json",
        **graph("gradient", "Gradient graphs"),
    params:
        settings=config["gradient"],
        algo=ALGO["gradient"],
        graphs=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/fit_gradient/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_gradient/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(4),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/fit_gradient.py"
