rule blink:
    input:
        frames=[FRAMES[name] for name in sorted(FRAMES)],
        normalized=[f"{RESULTS}/normalized/{name}_nsg.fits" for name in sorted(FRAMES)],
        choice=reference_choice,
    output:
        inputs=f"{RESULTS}/blink/inputs.gif",
        normalized=f"{RESULTS}/blink/normalized.gif",
        html=report(f"{RESULTS}/blink/index.html", caption="../report/blink.rst", category="Blink"),
    params:
        reference=reference_name,
        algo=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/blink.log",
    threads: 1
    resources:
        # one frame at a time, and the thumbnails
        mem_mb=lambda wc, input: max(500, int(3 * max(frame_size_mb(f) for f in input.frames))),
        runtime=30,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/blink.py"
