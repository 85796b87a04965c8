rule blink:
    input:
        settings=SETTINGS["diagnostics"],
        # each frame's thumbnails, made by normalize_frame from the frames it holds anyway
        thumbnails=[f"{RESULTS}/blink/frames/{name}.fits" for name in sorted(FRAMES)],
        choice=reference_choice,
    output:
        inputs=f"{RESULTS}/blink/inputs.gif",
        normalized=f"{RESULTS}/blink/normalized.gif",
        html=report(f"{RESULTS}/blink/index.html", caption="../report/blink.rst", category="Blink"),
    params:
        frames=sorted(FRAMES),
        reference=reference_name,
        algo=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/blink.log",
    threads: 1
    resources:
        mem_mb=500,  # thumbnails only
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/blink.py"
