rule plot_diagnostics:
    input:
        frame=frame_path,
        photometry=f"{RESULTS}/photometry/{{frame}}.csv",
        scale=f"{RESULTS}/scale/{{frame}}.json",
        samples=f"{RESULTS}/samples/{{frame}}.csv",
        gradient=f"{RESULTS}/gradient/{{frame}}.fits",
    output:
        photometry=report(
            f"{RESULTS}/diagnostics/{{frame}}_photometry.png",
            caption="../report/photometry.rst",
            category="Photometry graphs",
            labels={"frame": "{frame}"},
        ),
        gradient=report(
            f"{RESULTS}/diagnostics/{{frame}}_gradient.png",
            caption="../report/gradient.rst",
            category="Gradient graphs",
            labels={"frame": "{frame}"},
        ),
        samples=report(
            f"{RESULTS}/diagnostics/{{frame}}_samples.png",
            caption="../report/samples.rst",
            category="Sample maps",
            labels={"frame": "{frame}"},
        ),
    params:
        algo=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/plot_diagnostics/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_diagnostics/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(4),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/plot_diagnostics.py"


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
