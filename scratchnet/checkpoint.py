"""Checkpoints and run files, written atomically: a crash mid-write never leaves a file that looks valid.

A checkpoint is one ``.npz`` that loads with ``allow_pickle=False``: the model's
state dict (``model/<name>``), the optimiser's (``optimizer/<name>``), the
position in training, the random generators' states and the run's config
(as JSON strings), so that a resumed run continues exactly where it stopped;
with stochastic weight averaging, also the average so far (``swa/<name>``).
"""
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .backend import to_numpy

# 2 since the split into two tiers: the memory-efficient network's dropout masks are drawn in the textbook's
# order, so a run with dropout saved in format 1 continues, but not as the code that saved it would have.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as e:
        if e.filename is None:           # a full disk, say, reported by write or fsync: name the file meant
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def generator_state(rng):
    """A NumPy Generator's state as a JSON string (it holds 128-bit integers, which npz cannot)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"checkpoints save NumPy generators (numpy.random.default_rng), not {type(rng).__name__}; "
                        "draw the random numbers of a GPU run from a NumPy generator and move them to the GPU")
    return json.dumps(rng.bit_generator.state)


def restore_generator(rng, state):
    rng.bit_generator.state = json.loads(str(state))


def save_checkpoint(path, model, optimizer, progress, generators, config, average=None):
    """Write model, optimiser, progress (a dict of numbers and arrays), generators (name -> Generator), config,
    and the state dict of a ``swa.WeightAverage`` if one is given."""
    arrays = {"format_version": np.array(FORMAT_VERSION), "config": np.array(json.dumps(config))}
    arrays.update({f"model/{name}": to_numpy(value) for name, value in model.state_dict().items()})
    arrays.update({f"optimizer/{name}": to_numpy(value) for name, value in optimizer.state_dict().items()})
    arrays.update({f"progress/{name}": np.asarray(value) for name, value in progress.items()})
    arrays.update({f"rng/{name}": np.array(generator_state(rng)) for name, rng in generators.items()})
    if average is not None:
        arrays.update({f"swa/{name}": to_numpy(value) for name, value in average.state_dict().items()})
    atomic_write(path, lambda f: np.savez(f, **arrays))


class CheckpointError(ValueError):
    """A file is not a complete, readable scratchnet checkpoint; the message names the file and what is wrong."""


def load_checkpoint(path):
    """Read a checkpoint into {"config", "model", "optimizer", "progress", "rng", "swa"} dicts (``swa`` empty
    unless the run averages weights), and its "format_version".

    A missing file, or anything that is not a complete checkpoint of a readable format (an empty, truncated or
    text file, a plain .npy, an archive without its config) raises a CheckpointError saying so.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (
            " (it is a folder: give its checkpoint.npz or best.npz)" if path.is_dir() else ""))
    not_one = f"{path} is not a complete scratchnet checkpoint"
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":           # every .npz is a zip archive; NumPy would try other formats
                raise CheckpointError(f"{not_one}: it is empty, or not a .npz archive "
                                      f"({path.stat().st_size} bytes)")
        with np.load(path, allow_pickle=False) as archive:
            entries = {key: archive[key] for key in archive.files}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # NumPy's own message for object arrays suggests allow_pickle=True: checkpoints never need it.
        reason = "it holds pickled objects, which checkpoints never do" if "pickle" in str(e) else e
        raise CheckpointError(f"{not_one}: it is truncated or damaged ({reason})") from None
    try:
        version = int(entries["format_version"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{not_one}: it has no format_version (an .npz written by something else?)") from None
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} is a scratchnet checkpoint of format {version}; this version reads format "
                              f"{' or '.join(map(str, READABLE_VERSIONS))}")
    sections = {"model": {}, "optimizer": {}, "progress": {}, "rng": {}, "swa": {}}
    for key, value in entries.items():
        section, _, name = key.partition("/")
        if section in sections:
            sections[section][name] = value
    try:
        sections["config"] = json.loads(str(entries["config"]))
    except KeyError:
        raise CheckpointError(f"{not_one}: it lacks the run's config") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{not_one}: its config is not valid JSON ({e})") from None
    if not isinstance(sections["config"], dict) or not sections["model"]:
        raise CheckpointError(f"{not_one}: it lacks the run's config or the model's weights")
    sections["format_version"] = version
    return sections


def non_finite_entries(arrays):
    """The names of the floating-point arrays in ``arrays`` (name -> array) that hold a NaN or an infinity."""
    return [name for name, value in arrays.items()
            if np.issubdtype(value.dtype, np.floating) and not bool(np.isfinite(value).all())]
