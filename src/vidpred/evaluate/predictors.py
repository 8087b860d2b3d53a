"""One predictor interface for every trained model and baseline: K context frames → H predicted frames.

``load_predictor(method, model)`` is the one way to get a predictor; ``model`` is a local file or folder, or an
MLflow artifact URI (``runs:/<run_id>/model``, ``mlflow-artifacts:/…``, ``models:/…``) that is downloaded first
(:func:`resolve_model`). Every predictor answers

    predict(context, horizon, samples=1, generator=None) -> B×N×H×3×H×W in [0, 1]

for ``context`` B×K×3×H×W float in [0, 1]; deterministic methods return N = 1 whatever ``samples`` is
(:attr:`Predictor.stochastic` says which). The networks live on the predictor's ``device``; the context is
copied there and the prediction comes back on the context's device. Methods:

* ``copy-last`` — the last context frame repeated (the no-change baseline every paper's number should beat);
* ``linear`` — per-pixel linear extrapolation of the last two context frames, clipped to [0, 1] (copy-last when
  K = 1): a second, motion-aware trivial baseline;
* ``corrwise`` — the CorrWise 3D-conv predictor (``predictor.pt`` of ``vidpred train corrwise``), fed back on itself;
* ``moso`` — MOSO-VQVAE + MOSO-Transformer (``moso_transformer.pt`` and ``moso_vqvae.pt``; the VQVAE is found
  beside the transformer or through its token set), MaskGIT sampling per trial;
* ``landmarks`` — landmark autoencoder + LSTM dynamics (``dynamics.pt`` and ``landmarks.pt``), decoded with the
  last context frame's appearance (paper §3).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vidpred.errors import VidpredError

METHODS = ("copy-last", "linear", "corrwise", "moso", "landmarks")
BASELINES = ("copy-last", "linear")
_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "s3://", "gs://", "http://", "https://")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else the CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given (CUDA must exist)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise VidpredError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VidpredError(f"device {device}: CUDA is not available on this machine")
    return dev


def resolve_model(model: str | Path) -> Path:
    """A local path for ``model``: the path itself, or an MLflow artifact URI downloaded into a temp folder."""
    text = str(model)
    if text.startswith(_URI_SCHEMES):
        import mlflow

        from vidpred.tracking import preflight

        mlflow.set_tracking_uri(preflight())
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        except Exception as exc:  # MlflowException, OSError, …
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise VidpredError(f"--model {text}: cannot download the MLflow artifact ({first[:300]})") from None
    path = Path(text).expanduser()
    if not path.exists():
        raise VidpredError(f"--model {text} does not exist")
    return path


def resolve_model_file(model: str | Path, name: str, what: str, hint: str = "") -> Path:
    """The model file for a command's ``--model``: a file as given, else ``name`` in the folder — a local one or
    what an MLflow URI (``models:/vidpred-<track>-<method>@champion``, ``runs:/<id>/model``) downloads to."""
    path = resolve_model(model)
    return path if path.is_file() else _find(path, name, what, hint)


def _find(root: Path, name: str, what: str, hint: str) -> Path:
    """``root`` itself if it is the file ``name``, else ``name`` in the folder ``root`` (or beside the file)."""
    folder = root if root.is_dir() else root.parent
    if root.is_file() and root.name == name:
        return root
    for cand in (folder / name, *sorted(folder.glob(f"*/{name}"))):
        if cand.is_file():
            return cand
    raise VidpredError(f"{what}: no {name} in {folder} ({hint})")


class Predictor:
    """Base class: subclasses implement :meth:`_predict` (B×K×3×H×W → B×N×H×3×H×W)."""

    name = "predictor"
    stochastic = False
    min_context = 1

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def describe(self) -> str:
        return self.name

    @torch.no_grad()
    def predict(self, context: torch.Tensor, horizon: int, samples: int = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if context.ndim != 5 or context.shape[2] != 3:
            raise VidpredError(f"{self.name}: context must be B×K×3×H×W, got {tuple(context.shape)}")
        if context.shape[1] < self.min_context:
            raise VidpredError(f"{self.name} needs at least {self.min_context} context frames, got {context.shape[1]}")
        if horizon < 1:
            raise VidpredError(f"{self.name}: horizon must be ≥ 1, got {horizon}")
        out = self._predict(context.float(), int(horizon), max(1, int(samples)) if self.stochastic else 1, generator)
        b, k, c, h, w = context.shape
        if out.shape[0] != b or out.shape[2:] != (horizon, c, h, w):
            raise VidpredError(f"{self.name} returned {tuple(out.shape)}, expected B×N×{horizon}×{c}×{h}×{w}")
        return out.clamp(0, 1).to(context.device)

    def _predict(self, context, horizon, samples, generator):  # pragma: no cover - abstract
        raise NotImplementedError


class CopyLast(Predictor):
    name = "copy-last"

    def _predict(self, context, horizon, samples, generator):
        return context[:, -1:].unsqueeze(1).expand(-1, 1, horizon, -1, -1, -1).clone()


class LinearExtrapolation(Predictor):
    name = "linear"

    def _predict(self, context, horizon, samples, generator):
        last = context[:, -1]
        if context.shape[1] < 2:
            return CopyLast._predict(self, context, horizon, samples, generator)
        velocity = last - context[:, -2]
        steps = torch.arange(1, horizon + 1, dtype=context.dtype, device=context.device).view(1, horizon, 1, 1, 1)
        return (last[:, None] + steps * velocity[:, None]).clamp(0, 1)[:, None]


class CorrWisePredictor(Predictor):
    name = "corrwise"

    def __init__(self, path: Path, device="cpu"):
        super().__init__(device)
        from vidpred.train.corrwise import load_predictor_file

        self.path = _find(path, "predictor.pt", "corrwise model", "train it with `vidpred train corrwise`")
        self.net = load_predictor_file(self.path).to(self.device).eval()
        self.min_context = self.net.cfg.context_frames

    def describe(self) -> str:
        return f"corrwise ({self.path})"

    def _predict(self, context, horizon, samples, generator):
        k = self.net.cfg.context_frames
        x = context[:, -k:].to(self.device) * 2 - 1  # the predictor works in [-1, 1] (tanh output)
        return ((self.net.rollout(x, horizon) + 1) / 2)[:, None]


class MosoPredictor(Predictor):
    name = "moso"
    stochastic = True

    def __init__(self, path: Path, device="cpu", steps: int = 16, temperature: float = 4.5,
                 token_temperature: float = 1.0):
        super().__init__(device)
        from vidpred.models.moso.inference import load_transformer, load_vqvae

        hint = "train it with `vidpred train moso-transformer`"
        self.transformer_path = _find(path, "moso_transformer.pt", "MOSO model", hint)
        self.transformer, tmeta = load_transformer(self.transformer_path)
        try:
            self.vqvae_path = _find(path, "moso_vqvae.pt", "MOSO model", "")
        except VidpredError:
            tokens = Path(str(tmeta.get("tokens", ""))) / "tokens.json"
            vq = json.loads(tokens.read_text()).get("vqvae") if tokens.is_file() else None
            if not vq or not Path(vq).is_file():
                raise VidpredError(f"MOSO model: no moso_vqvae.pt beside {self.transformer_path} and its token set "
                                   f"does not name an existing one; put the VQVAE file in the same folder") from None
            self.vqvae_path = Path(vq)
        self.vqvae, vmeta = load_vqvae(self.vqvae_path)
        if tmeta.get("codebook_version"):
            from vidpred.models.moso.inference import codebook_version

            if codebook_version(self.vqvae) != tmeta["codebook_version"]:
                raise VidpredError(f"MOSO model: {self.transformer_path} was trained on tokens of another codebook "
                                   f"than {self.vqvae_path}")
        self.trained_context = tmeta.get("context")
        self.raw_content = bool(vmeta.get("raw_content"))
        self.lower, self.upper = float(vmeta.get("lower", 0.1)), float(vmeta.get("upper", 0.9))
        self.steps, self.temperature, self.token_temperature = int(steps), float(temperature), float(token_temperature)
        self.vqvae.to(self.device)
        self.transformer.to(self.device)

    def describe(self) -> str:
        return (f"moso ({self.transformer_path}, {self.vqvae_path}; MaskGIT {self.steps} steps, temperature "
                f"{self.temperature:g}, token temperature {self.token_temperature:g})")

    def _predict(self, context, horizon, samples, generator):
        from vidpred.models.moso.inference import predict_video

        _check_frame_size(self.name, self.vqvae_path, self.vqvae.cfg.hw, context)
        k = context.shape[1]
        if self.trained_context is not None and int(self.trained_context) != k:
            raise VidpredError(f"the MOSO-Transformer was trained with {self.trained_context} context frames, "
                               f"the protocol gives {k}")
        ctx = context.to(self.device)
        if generator is not None and generator.device != self.device:  # sampling draws on the model's device
            seed = int(torch.randint(2**62, (1,), generator=generator))
            generator = torch.Generator(device=self.device).manual_seed(seed)
        out = [predict_video(self.vqvae, self.transformer, ctx, k + horizon, self.raw_content, self.lower, self.upper,
                             self.steps, self.temperature, generator, self.token_temperature)[:, k:]
               for _ in range(samples)]
        return torch.stack(out, dim=1)


def _check_frame_size(name: str, model_path, hw: tuple[int, int], context: torch.Tensor) -> None:
    """One clear error when the context frames are not the H×W the model was trained on."""
    h, w = context.shape[-2:]
    if (h, w) != tuple(hw):
        raise VidpredError(f"{name}: the model {model_path} was trained on {hw[0]}×{hw[1]} frames, the context "
                           f"frames are {h}×{w} (prepare the store with --size {hw[0]}x{hw[1]} or train on this one)")


class LandmarkPredictor(Predictor):
    name = "landmarks"

    def __init__(self, path: Path, device="cpu"):
        super().__init__(device)
        from vidpred.train.landmark_dynamics import load_dynamics
        from vidpred.train.landmarks import load_autoencoder
        from vidpred.models.files import load_model_file

        hint = "train it with `vidpred train landmark-dynamics`"
        self.dynamics_path = _find(path, "dynamics.pt", "landmark model", hint)
        self.lstm = load_dynamics(self.dynamics_path)
        try:
            self.autoencoder_path = _find(path, "landmarks.pt", "landmark model", "")
        except VidpredError:
            blob = load_model_file(self.dynamics_path, "vidpred-landmark-dynamics/1", "dynamics model", hint)
            ae = blob.get("autoencoder")
            if not ae or not Path(ae).is_file():
                raise VidpredError(f"landmark model: no landmarks.pt beside {self.dynamics_path}; put the "
                                   "autoencoder file in the same folder") from None
            self.autoencoder_path = Path(ae)
        self.net = load_autoencoder(self.autoencoder_path).eval().to(self.device)
        self.lstm = self.lstm.eval().to(self.device)
        if self.lstm.cfg.num_landmarks != self.net.cfg.num_landmarks:
            raise VidpredError(f"{self.dynamics_path} has {self.lstm.cfg.num_landmarks} landmarks but "
                               f"{self.autoencoder_path} has {self.net.cfg.num_landmarks}")

    def describe(self) -> str:
        return f"landmarks ({self.autoencoder_path}, {self.dynamics_path})"

    def _predict(self, context, horizon, samples, generator):
        import numpy as np

        from vidpred.models.landmarks import inference

        _check_frame_size(self.name, self.autoencoder_path, self.net.cfg.hw, context)
        out = []
        for clip in context.cpu():  # the landmark inference API takes uint8 frames (numpy) and returns them
            frames = (clip.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            seq = inference.predict(self.net, self.lstm, frames, horizon)
            pred = torch.from_numpy(seq.frames[len(frames):].astype(np.float32) / 255).permute(0, 3, 1, 2)
            out.append(pred)
        return torch.stack(out)[:, None]


def load_predictor(method: str, model: str | Path | None = None, device: str | torch.device = "cpu",
                   options: dict | None = None) -> Predictor:
    """The predictor of ``method`` (see the module docstring); ``options`` are method settings (MOSO sampling)."""
    options = dict(options or {})
    if method not in METHODS:
        raise VidpredError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    if method in BASELINES:
        if model:
            raise VidpredError(f"method {method} is a baseline and takes no --model")
        return CopyLast(device) if method == "copy-last" else LinearExtrapolation(device)
    if not model:
        raise VidpredError(f"method {method} needs --model (a file, folder or runs:/… URI)")
    path = resolve_model(model)
    if method == "corrwise":
        return CorrWisePredictor(path, device)
    if method == "moso":
        known = {"steps", "temperature", "token_temperature"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise VidpredError(f"moso options: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return MosoPredictor(path, device, **options)
    return LandmarkPredictor(path, device)


__all__ = ["Predictor", "CopyLast", "LinearExtrapolation", "CorrWisePredictor", "MosoPredictor", "LandmarkPredictor",
           "load_predictor", "resolve_model", "resolve_model_file", "resolve_device", "METHODS", "BASELINES"]
