# One job per frame after detection, for benchmarks/speed.py --compare-one-job: the workflow's stage
# rules from photometry to the normalized frame, run one after the other in one job of one rule.
# speed.py appends `include:` of this file to a copy of the Snakefile; the stage rules stay defined,
# and the ruleorder below makes Snakemake take this rule for every file they make.

from snakemake.io import strip_wildcard_constraints

#: the stage rules this rule runs, in order; each has its script in scripts/<rule>.py
ONE_JOB_STAGES = [rule for rule, _ in STAGE_OUTPUTS[1:]]


def _made_by_stages():
    """Each file pattern a stage rule makes -> this rule's name for it, ``{stage}__{name}``."""
    return {
        strip_wildcard_constraints(str(path)): f"{stage}__{name}"
        for stage in ONE_JOB_STAGES
        for name, path in getattr(rules, stage).rule.output.items()
    }


def _one_job_items(kind):
    """Every stage rule's named ``kind`` (input, output, params, log) as ``{stage}__{name}``; the inputs
    one stage makes for another are left out."""
    made = _made_by_stages()
    items = {}
    for stage in ONE_JOB_STAGES:
        for name, item in getattr(getattr(rules, stage).rule, kind).items():
            if not (kind == "input" and isinstance(item, str) and str(item) in made):
                items[f"{stage}__{name}"] = item
    return items


def _stage_inputs():
    """Each stage's input names in order, each with where this rule holds it: ``("input" or "output",
    this rule's name for it)``."""
    made = _made_by_stages()
    return {
        stage: [
            (name, *(("output", made[str(item)]) if str(item) in made else ("input", f"{stage}__{name}")))
            for name, item in getattr(rules, stage).rule.input.items()
        ]
        for stage in ONE_JOB_STAGES
    }


rule one_job_per_frame:
    input:
        **_one_job_items("input"),
    output:
        **_one_job_items("output"),
    params:
        **_one_job_items("params"),
        stages=ONE_JOB_STAGES,
        inputs=_stage_inputs(),
        scripts=[os.path.join(workflow.basedir, "scripts", f"{stage}.py") for stage in ONE_JOB_STAGES],
    log:
        **{f"{stage}__log": getattr(rules, stage).rule.log[0] for stage in ONE_JOB_STAGES},
        one_job=f"{RESULTS}/logs/one_job_per_frame/{{frame}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/one_job_per_frame/{{frame}}.tsv"
    threads: 1
    script:
        "one_job_per_frame.py"


ruleorder: one_job_per_frame > measure_photometry
ruleorder: one_job_per_frame > fit_scale
ruleorder: one_job_per_frame > sample_gradient
ruleorder: one_job_per_frame > fit_gradient
ruleorder: one_job_per_frame > normalize_frame
