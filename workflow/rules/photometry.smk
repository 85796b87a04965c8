rule measure_photometry:
    # matched stars measured with the same aperture on the frame and the reference
    input:
        settings=SETTINGS["photometry"],
        frame=frame_path,
        reference=reference_path,
        stats=f"{RESULTS}/catalogs/{{frame}}.json",
        catalog=f"{RESULTS}/catalogs/{{frame}}.csv",
        defects=f"{RESULTS}/defects/{{frame}}.csv",
        ref_stats=reference_file("catalogs/{}.json"),
        ref_catalog=reference_file("catalogs/{}.csv"),
        ref_defects=reference_file("defects/{}.csv"),
        choice=reference_choice,
    output:
        photometry=f"{RESULTS}/photometry/{{frame}}.csv",
        aperture=f"{RESULTS}/photometry/{{frame}}.json",
        provenance=f"{RESULTS}/provenance/measure_photometry/{{frame}}.json",
    params:
        match=config["match"],
        settings=config["photometry"],
        algo=ALGO["photometry"],
    log:
        f"{RESULTS}/logs/measure_photometry/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure_photometry/{{frame}}.tsv"
    group:
        FRAME_GROUP
    threads: 1
    resources:
        mem_mb=frame_mb(6),
        runtime=10,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/measure_photometry.py"
