# Validate the configuration, find the frames and define what every rule shares.
import nsgflow
from nsgflow.summary import write_summary
from nsgflow.workflow import check_frames, find_frames, validate_config

validate_config(config)

RESULTS = config["results"].rstrip("/")
#: frame name -> path, for every input frame
FRAMES = find_frames(config["frames"], config["reference"])
check_frames(FRAMES)
REFERENCE = config["reference"]
REFERENCE_NAME = next(name for name, path in FRAMES.items() if os.path.samefile(path, REFERENCE))
ALGO = nsgflow.ALGORITHM_VERSIONS


wildcard_constraints:
    frame="|".join(re.escape(name) for name in FRAMES),


def report_failures():
    """Write the summary of what finished and what failed, and say where it is."""
    try:
        table = write_summary(RESULTS, FRAMES, REFERENCE_NAME, config["reject"])
    except Exception as exc:  # never hide the run's own error behind this one
        print(f"nsgflow: could not write {RESULTS}/summary.csv: {exc}", file=sys.stderr)
        return
    failed = table[table["status"] == "failed"]
    for row in failed.itertuples():
        print(f"nsgflow: FAILED {row.frame}: {row.reason}", file=sys.stderr)
    print(
        f"nsgflow: {len(failed)} of {len(table)} frames failed; see {RESULTS}/summary.csv",
        file=sys.stderr,
    )


def frame_path(wildcards):
    return FRAMES[wildcards.frame]


def frame_mb(wildcards, input):
    """Memory a job on one frame may need: a few copies of the frame, at least 500 MB."""
    return max(500, int(8 * os.path.getsize(input.frame) / 2**20))
