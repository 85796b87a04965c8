checkpoint choose_reference:
    input:
        expand(f"{RESULTS}/catalogs/{{frame}}.json", frame=FRAMES),
    output:
        table=report(f"{RESULTS}/reference.csv", caption="../report/reference.rst", category="Summary"),
        chosen=f"{RESULTS}/reference.txt",
    log:
        f"{RESULTS}/logs/choose_reference.log",
    localrule: True
    conda:
        "../../envs/nsgflow.yaml"
    script:
        "../../scripts/choose_reference.py"
