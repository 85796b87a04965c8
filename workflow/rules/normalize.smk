rule normalize_frame:
    input:
        frame=frame_path,
        scale=f"{RESULTS}/scale/{{frame}}.json",
        gradient=f"{RESULTS}/gradient/{{frame}}.fits",
    output:
        normalized=f"{RESULTS}/normalized/{{frame}}_nsg.fits",
    params:
        reference=REFERENCE,
        # recorded in the output's HISTORY: every setting that shaped it
        settings={
            key: config[key] for key in ("detect", "match", "photometry", "scale", "samples", "gradient")
        },
        algo=ALGO,
    log:
        f"{RESULTS}/logs/normalize_frame/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/normalize_frame/{{frame}}.tsv"
    threads: 1
    resources:
        mem_mb=frame_mb,
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/normalize_frame.py"
