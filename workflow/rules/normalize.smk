#: each frame's input and normalized frame, block-averaged, for the blink view (diagnostics: blink)
THUMBNAILS = (
    {"thumbnails": f"{RESULTS}/blink/frames/{{frame}}.fits"} if config["diagnostics"]["blink"] else {}
)


rule normalize_frame:
    # T' = m*T - G; the earlier stages' files are inputs for the provenance record, which hashes them
    input:
        settings=SETTINGS["normalize"],
        frame=frame_path,
        reference=reference_path,
        scale=f"{RESULTS}/scale/{{frame}}.json",
        gradient=f"{RESULTS}/gradient/{{frame}}.fits",
        stats=f"{RESULTS}/catalogs/{{frame}}.json",
        ref_stats=reference_file("catalogs/{}.json"),
        catalog=f"{RESULTS}/catalogs/{{frame}}.csv",
        ref_catalog=reference_file("catalogs/{}.csv"),
        defects=f"{RESULTS}/defects/{{frame}}.csv",
        ref_defects=reference_file("defects/{}.csv"),
        photometry=f"{RESULTS}/photometry/{{frame}}.csv",
        aperture=f"{RESULTS}/photometry/{{frame}}.json",
        samples=f"{RESULTS}/samples/{{frame}}.csv",
        samples_record=f"{RESULTS}/samples/{{frame}}.json",
        choice=reference_choice,
    output:
        normalized=f"{RESULTS}/normalized/{{frame}}_nsg.fits",
        provenance=f"{RESULTS}/provenance/{{frame}}.json",
        **THUMBNAILS,
    params:
        # every section, for the header: all are stages before this one, so this reruns nothing more
        settings=FRAME_SETTINGS,
        algo=ALGO["normalize"],
        workflow_folder=workflow.basedir,
    log:
        f"{RESULTS}/logs/normalize_frame/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/normalize_frame/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(4),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/normalize_frame.py"


rule export_xisf:
    # for PixInsight users: XISF inputs also get an XISF normalized frame
    input:
        frame=frame_path,
        normalized=f"{RESULTS}/normalized/{{frame}}_nsg.fits",
    output:
        xisf=f"{RESULTS}/normalized/{{frame}}_nsg.xisf",
    log:
        f"{RESULTS}/logs/export_xisf/{{frame}}.log",
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(6),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/export_xisf.py"


rule summarize:
    input:
        # every frame's statistics and the outputs of each stage, whose headers and records it reads
        expand(f"{RESULTS}/catalogs/{{frame}}.json", frame=FRAMES),
        [f"{RESULTS}/{pattern.format(name)}" for _, pattern in STAGE_OUTPUTS for name in FRAMES],
        reference_choice,
        settings=SETTINGS["set"],
    output:
        summary=report(f"{RESULTS}/summary.csv", caption="../report/summary.rst", category="Summary"),
        graph=report(f"{RESULTS}/summary.png", caption="../report/summary_graph.rst", category="Summary"),
        weights=f"{RESULTS}/weights.csv",
        accepted=f"{RESULTS}/accepted.txt",
    params:
        results=lambda wildcards, output: str(Path(output.summary).parent),
        frames=FRAMES,
        reference=reference_name,
        reject=config["reject"],
    log:
        f"{RESULTS}/logs/summarize.log",
    localrule: True
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/summarize.py"


rule index_provenance:
    input:
        expand(f"{RESULTS}/provenance/{{frame}}.json", frame=FRAMES),
    output:
        index=f"{RESULTS}/provenance.json",
    log:
        f"{RESULTS}/logs/index_provenance.log",
    localrule: True
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/index_provenance.py"
