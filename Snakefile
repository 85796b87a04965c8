# nsgflow: NormalizeScaleGradient-style normalization of light frames.
# Usage: snakemake --cores 2 --config frames='data/night1/*.fits' reference=data/night1/m31_003.fits
# Settings and their meaning: config.yaml. Stages: workflow/rules/.

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/photometry.smk"
include: "workflow/rules/scale.smk"
include: "workflow/rules/gradient.smk"
include: "workflow/rules/normalize.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/stack.smk"


rule all:
    input:
        expand(f"{RESULTS}/normalized/{{frame}}_nsg.fits", frame=FRAMES),
        [f"{RESULTS}/{pattern.format(name)}" for name in FRAMES for pattern in STAGE_FILES],
        f"{RESULTS}/provenance.json",
        f"{RESULTS}/summary.csv",
        [f"{RESULTS}/normalized/{name}_nsg.xisf" for name, path in FRAMES.items() if is_xisf(path)],
        expand(
            f"{RESULTS}/diagnostics/{{frame}}_{{graph}}.png",
            frame=FRAMES if config["diagnostics"]["plots"] else [],
            graph=["photometry", "gradient", "samples"],
        ),
        [f"{RESULTS}/blink/index.html"] if config["diagnostics"]["blink"] else [],


onstart:
    unthrottle_scheduler(workflow)
    progress.log_plan(workflow.dag)  # the jobs to run, for nsgflow run's display
    # local jobs run in forks of a process that has imported the libraries once (nsgflow.jobserver)
    jobserver.start(workflow.local_exec and not workflow.remote_exec)


onsuccess:
    jobserver.stop()


onerror:
    jobserver.stop()
    # some frames failed (with --keep-going the others finished): list them with their reasons
    report_failures()
