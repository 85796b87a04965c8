rule sample_background:
    input:
        frame=frame_path,
        reference=reference_path,
        scale=f"{RESULTS}/scale/{{frame}}.json",
        catalogs=lambda wc: [f"{RESULTS}/catalogs/{wc.frame}.csv", reference_file("catalogs/{}.csv")(wc)],
        stats=lambda wc: [f"{RESULTS}/catalogs/{wc.frame}.json", reference_file("catalogs/{}.json")(wc)],
    output:
        samples=f"{RESULTS}/samples/{{frame}}.csv",
    params:
        settings=config["samples"],
        algo=ALGO["samples"],
    log:
        f"{RESULTS}/logs/sample_background/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_background/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(5),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/sample_background.py"


rule fit_gradient:
    input:
        frame=frame_path,
        samples=f"{RESULTS}/samples/{{frame}}.csv",
    output:
        gradient=f"{RESULTS}/gradient/{{frame}}.fits",
        curvature=f"{RESULTS}/gradient/{{frame}}_curvature.fits",
    params:
        settings=config["gradient"],
        algo=ALGO["gradient"],
    log:
        f"{RESULTS}/logs/fit_gradient/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_gradient/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(5),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/fit_gradient.py"
