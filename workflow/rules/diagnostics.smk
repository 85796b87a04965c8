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
    threads: 1
    resources:
        mem_mb=frame_mb,
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/plot_diagnostics.py"
