"""INT8 calibration: batches from a folder of images or an .npy file, and the calibrator TensorRT reads them from.

Images are preprocessed like the host's evaluation pipeline (edgeprune.data.dataset): the long side resized to the
input size (PIL bilinear, aspect kept, JPEGs drafted at a reduced DCT scale), centred on a gray (114) canvas,
RGB (grayscale replicated), scaled to [0, 1], NCHW float32. An .npy file holds already preprocessed float32
`[M, C, H, W]`; it is read memory-mapped.

The calibrator is IInt8EntropyCalibrator2 with a cache file: when the cache exists TensorRT reads the scales from
it and no image is touched. On TensorRT ≥ 8.5 it is Polygraphy's `Calibrator` (it owns the device buffers through
its own libcudart binding); on 8.2 (a TX2, where PyPI's Polygraphy does not run) it is the small class below, with
device memory from pycuda or cuda-python.

`write_random_npy` writes random calibration data (an engine built for timing only) straight into a memory-mapped
.npy file, a chunk at a time, after checking its size against a limit: a request for a huge input shape is
refused before any memory is taken.
"""

import os
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

PAD_VALUE = 114
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def letterbox_geometry(width: int, height: int, out_w: int, out_h: int) -> Tuple[int, int, int, int]:
    """(new_w, new_h, x0, y0): the resized size and top-left corner, rounded as the host rounds them."""
    r = min(float(out_w) / width, float(out_h) / height)
    nw, nh = max(1, int(round(width * r))), max(1, int(round(height * r)))
    return nw, nh, int(round((out_w - nw) / 2.0 - 0.1)), int(round((out_h - nh) / 2.0 - 0.1))


def to_8bit(im: "Image.Image") -> "Image.Image":
    """'L' or 'RGB'; 16-bit / float SAR amplitude stretched linearly from its min to its max.

    The host's dataset uses this same function, so calibration images match training images exactly."""
    import numpy as np
    from PIL import Image

    if im.mode in ("L", "RGB"):
        return im
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return Image.fromarray(np.round((a - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8))
    return im.convert("L" if im.mode in ("1", "LA", "La") else "RGB")


def load_image(path: Union[str, os.PathLike], out_h: int, out_w: int, channels: int = 3) -> "np.ndarray":
    """One letterboxed image as float32 [channels, out_h, out_w] in [0, 1]."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(str(path)) as im:
            w, h = im.size
            nw, nh, x0, y0 = letterbox_geometry(w, h, out_w, out_h)
            if im.format == "JPEG":
                im.draft(None, (nw, nh))
            im = to_8bit(im)
            if im.size != (nw, nh):
                im = im.resize((nw, nh), Image.BILINEAR)
            im = im.convert("L" if channels == 1 else "RGB")
            a = np.asarray(im)
    except (OSError, ValueError) as e:
        raise ValueError("calibration image {} cannot be decoded ({}): replace or delete it".format(path, e))
    canvas = np.full((out_h, out_w, channels), PAD_VALUE, dtype=np.uint8)
    canvas[y0:y0 + nh, x0:x0 + nw] = a.reshape(nh, nw, channels)
    return canvas.transpose(2, 0, 1).astype(np.float32) / 255.0


def list_images(folder: Union[str, os.PathLike]) -> List[str]:
    names = sorted(n for n in os.listdir(str(folder)) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise ValueError("no images ({}) in calibration folder {}".format(", ".join(IMAGE_SUFFIXES), folder))
    return [os.path.join(str(folder), n) for n in names]


def write_random_npy(path: Union[str, os.PathLike], shape: Iterable[int], max_bytes: Optional[int] = None,
                     seed: int = 0) -> Union[str, os.PathLike]:
    """A float32 .npy file of `shape` ([M, C, H, W]) with values uniform in [0, 1), written through a memory map
    (never more than a chunk in memory); ValueError when it would exceed `max_bytes`. Returns `path`."""
    import numpy as np

    from .stats import check_bytes, fill_random, nbytes

    shape = tuple(int(d) for d in shape)
    check_bytes("random INT8 calibration data of shape {}".format(list(shape)), nbytes(shape, 4), max_bytes,
                "max_bytes")
    array = np.lib.format.open_memmap(str(path), mode="w+", dtype=np.float32, shape=shape)
    try:
        fill_random(array, seed)
        array.flush()
    finally:
        del array
    return path


class CalibrationData(object):
    """Re-iterable float32 batches of `shape` ([N, C, H, W]) from an image folder or an .npy file.

    An incomplete last batch is dropped; `max_batches` limits how many batches are produced.
    """

    def __init__(self, source: Union[str, os.PathLike], shape: Sequence[int],
                 max_batches: Optional[int] = None) -> None:
        self.source, self.shape = str(source), tuple(int(d) for d in shape)
        if len(self.shape) != 4 or self.shape[1] not in (1, 3):
            raise ValueError("calibration needs an NCHW input with 1 or 3 channels, not {}".format(self.shape))
        if os.path.isdir(self.source):
            self.images, self.array = list_images(self.source), None
            count = len(self.images)
        elif self.source.endswith(".npy") and os.path.isfile(self.source):
            self.images, self.array = None, self._load_npy()
            count = self.array.shape[0]
        else:
            raise ValueError("calibration source {} is neither a folder of images nor an .npy file"
                             .format(self.source))
        self.batches = count // self.shape[0]
        if max_batches is not None:
            self.batches = min(self.batches, int(max_batches))
        if self.batches < 1:
            raise ValueError("calibration source {} has {} sample(s), fewer than one batch of {}"
                             .format(self.source, count, self.shape[0]))

    def _load_npy(self):
        import numpy as np

        a = np.load(self.source, mmap_mode="r")
        if a.ndim != 4 or tuple(a.shape[1:]) != self.shape[1:]:
            raise ValueError("{} holds an array of shape {}; calibration wants [M, {}, {}, {}] (preprocessed "
                             "NCHW float32)".format(self.source, a.shape, *self.shape[1:]))
        return a

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator["np.ndarray"]:
        import numpy as np

        n, c, h, w = self.shape
        for b in range(self.batches):
            if self.array is not None:
                batch = self.array[b * n:(b + 1) * n]
            else:
                batch = [load_image(p, h, w, c) for p in self.images[b * n:(b + 1) * n]]
            yield np.ascontiguousarray(batch, dtype=np.float32)


class _Feeds(object):
    """CalibrationData as Polygraphy's data loaders are: re-iterable feed dicts."""

    def __init__(self, data: CalibrationData, input_name: str) -> None:
        self.data, self.input_name = data, input_name

    def __iter__(self) -> Iterator[Dict[str, "np.ndarray"]]:
        for batch in self.data:
            yield {self.input_name: batch}


def _read_cache(path):
    if path and os.path.isfile(str(path)) and os.path.getsize(str(path)) > 0:
        with open(str(path), "rb") as f:
            return f.read()
    return None


def _entropy_calibrator(trt, data, cache_path):
    """The hand-written IInt8EntropyCalibrator2 (TensorRT 8.2 and any version without Polygraphy)."""
    from .cuda import cuda_backend
    from .files import write_atomic

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by TensorRT's Python trampolines
            self.batches = iter(data) if data is not None else iter(())
            self.batch_size = data.shape[0] if data is not None else 1
            self.cuda, self.ptr = None, None

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            try:
                batch = next(self.batches)
            except StopIteration:
                self.release()
                return None
            if self.cuda is None:
                self.cuda = cuda_backend()
                self.ptr = self.cuda.alloc(batch.nbytes)
            self.cuda.htod(self.ptr, batch)
            self.cuda.sync()
            return [self.ptr]

        def read_calibration_cache(self) -> Optional[bytes]:
            return _read_cache(cache_path)

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path:
                write_atomic(cache_path, cache)

        def release(self) -> None:
            if self.cuda is not None:
                self.cuda.free(self.ptr)
                self.cuda.close()
                self.cuda = None

    return EntropyCalibrator()


def use_polygraphy_calibrator(version: Union[str, int, Tuple[int, ...]]) -> bool:
    """Polygraphy's Calibrator runs on TensorRT ≥ 8.5 only (PyPI Polygraphy imports `tensorrt>=8.5`)."""
    from .trt_versions import parse_version

    if parse_version(version)[:2] < (8, 5):
        return False
    import importlib
    try:
        importlib.import_module("polygraphy.backend.trt")
    except ImportError:
        return False
    return True


def make_calibrator(trt: Any, version: Union[str, int, Tuple[int, ...]], input_name: str, shape: Sequence[int],
                    source: Optional[Union[str, os.PathLike]] = None,
                    cache_path: Optional[Union[str, os.PathLike]] = None, max_batches: Optional[int] = None) -> Any:
    """An IInt8EntropyCalibrator2 over `source` (may be None when `cache_path` already holds the scales)."""
    data = CalibrationData(source, shape, max_batches) if source is not None else None
    if data is None and _read_cache(cache_path) is None:
        raise ValueError("INT8 calibration needs images, an .npy batch or an existing cache file")
    if use_polygraphy_calibrator(version):
        from polygraphy.backend.trt import Calibrator

        feeds = _Feeds(data, input_name) if data is not None else []
        return Calibrator(feeds, cache=str(cache_path) if cache_path else None,
                          batch_size=int(shape[0]), BaseClass=trt.IInt8EntropyCalibrator2)
    return _entropy_calibrator(trt, data, cache_path)
