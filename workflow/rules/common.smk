# Validate the configuration, find the frames and define what every rule shares.
import nsgflow
from nsgflow.workflow import find_frames, validate_config

validate_config(config)

RESULTS = config["results"].rstrip("/")
#: frame name -> path, for every input frame
FRAMES = find_frames(config["frames"], config["reference"])
REFERENCE = config["reference"]
REFERENCE_NAME = next(name for name, path in FRAMES.items() if os.path.samefile(path, REFERENCE))
ALGO = nsgflow.ALGORITHM_VERSIONS


wildcard_constraints:
    frame="|".join(re.escape(name) for name in FRAMES),


def frame_path(wildcards):
    return FRAMES[wildcards.frame]


def frame_mb(wildcards, input):
    """Memory a job on one frame may need: a few copies of the frame, at least 500 MB."""
    return max(500, int(8 * os.path.getsize(input.frame) / 2**20))
