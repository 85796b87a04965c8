#: the graphs of a frame (diagnostics: plots), each redrawn only when what it shows changes
GRAPH_REPORT = {
    graph: dict(caption=f"../report/{graph}.rst", category=category, labels={"frame": "{frame}"})
    for graph, category in [
        ("photometry", "Photometry graphs"),
        ("gradient", "Gradient graphs"),
        ("samples", "Sample maps"),
    ]
}


rule photometry_graph:
    input:
        photometry=f"{RESULTS}/photometry/{{frame}}.csv",
        scale=f"{RESULTS}/scale/{{frame}}.json",
    output:
        graph=report(f"{RESULTS}/diagnostics/{{frame}}_photometry.png", **GRAPH_REPORT["photometry"]),
    params:
        algo=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/photometry_graph/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/photometry_graph/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/photometry_graph.py"


rule gradient_graph:
    input:
        gradient=f"{RESULTS}/gradient/{{frame}}.fits",
        samples=f"{RESULTS}/samples/{{frame}}.csv",
    output:
        graph=report(f"{RESULTS}/diagnostics/{{frame}}_gradient.png", **GRAPH_REPORT["gradient"]),
    params:
        algo=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/gradient_graph/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gradient_graph/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=500,  # the model is mapped: its centre row and column are read
        runtime=5,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/gradient_graph.py"


rule sample_map:
    input:
        frame=frame_path,
        samples=f"{RESULTS}/samples/{{frame}}.csv",
    output:
        graph=report(f"{RESULTS}/diagnostics/{{frame}}_samples.png", **GRAPH_REPORT["samples"]),
    params:
        algo=ALGO["diagnostics"],
    log:
        f"{RESULTS}/logs/sample_map/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_map/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(2),  # the frame is mapped, every few pixels read
        runtime=5,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/sample_map.py"


rule blink:
    input:
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
