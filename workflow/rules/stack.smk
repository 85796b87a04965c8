# Not part of the default target: ask for it with `nsgflow run ... stack` (or `snakemake ... stack`).
rule stack:
    input:
        settings=SETTINGS["stack"],
        accepted=f"{RESULTS}/accepted.txt",
        weights=f"{RESULTS}/weights.csv",
    output:
        stack=f"{RESULTS}/stack/stack.fits",
        rejected=f"{RESULTS}/stack/rejected.fits",
    params:
        settings=config["stack"],
    log:
        f"{RESULTS}/logs/stack.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/stack.py"
