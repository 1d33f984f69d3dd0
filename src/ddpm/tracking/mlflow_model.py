"""The EMA model as an MLflow model, logged "from code" (this file) with the safetensors weights and the run's
params.yaml as artifacts: ``mlflow.pyfunc.load_model("models:/ddpm-digits@best_fid")`` rebuilds the network from
them, no pickle involved.

``predict({"num_samples": 8, "seed": 0})`` returns uint8 images N×H×W×C, drawn as the sample stage draws them
(image i from its own generator seeded by (seed, i)) with the run's sample params; ``sampler``, ``steps`` and
``eta`` in the input override them, e.g. ``{"num_samples": 4, "sampler": "ddim", "steps": 20}``.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel

REQUEST_KEYS = ("num_samples", "seed", "start", "batch_size", "sampler", "steps", "eta")


def request(model_input) -> dict:
    """The sampling request of a dict or a one-row DataFrame (how MLflow may pass a dict input)."""
    if hasattr(model_input, "to_dict"):
        rows = model_input.to_dict(orient="records")
        if len(rows) != 1:
            raise ValueError(f"predict: expected one request row, got {len(rows)}")
        model_input = rows[0]
    if not isinstance(model_input, dict):
        raise ValueError(
            f"predict: expected a dict such as {{'num_samples': 8, 'seed': 0}}, got {type(model_input).__name__}"
        )
    unknown = sorted(set(model_input) - set(REQUEST_KEYS))
    if unknown:
        raise ValueError(f"predict: unknown key {unknown[0]!r}; known: {', '.join(REQUEST_KEYS)}")
    return {k: v for k, v in model_input.items() if v is not None}


class DiffusionSampler(PythonModel):
    def load_context(self, context) -> None:
        import torch

        from ddpm.config import load_params
        from ddpm.factory import load_for_inference

        self.params = load_params(context.artifacts["params"])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.inference = load_for_inference(self.params, Path(context.artifacts["weights"]), device)

    def predict(self, context, model_input, params=None):
        from ddpm.config import validate_params
        from ddpm.core.generation import generate

        req = request(model_input)
        overrides = {k: req[k] for k in ("sampler", "steps", "eta") if k in req}
        params = self.params
        if overrides:  # validated as params.yaml would be (a sampler that needs steps, an η out of range, ...)
            raw = params.model_dump(mode="json")
            params = validate_params(raw | {"sample": raw["sample"] | overrides})
        count = int(req.get("num_samples", 8))
        inf = self.inference
        return generate(
            inf.diffusion,
            inf.model,
            inf.shape,
            seed=int(req.get("seed", params.seed)),
            start=int(req.get("start", 0)),
            count=count,
            batch_size=int(req.get("batch_size", min(count, params.sample.batch_size))),
            device=inf.device,
            **params.sample.sampler_options(),
        )


mlflow.models.set_model(DiffusionSampler())
