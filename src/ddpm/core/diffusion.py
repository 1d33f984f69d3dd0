"""Gaussian diffusion: the forward process, the reverse process and its variational bound.

Equation numbers refer to Ho et al. 2020 ("DDPM"), Nichol & Dhariwal 2021 ("iDDPM") and Song et al. 2020 ("DDIM").
Index ``t`` runs over 0..T-1 and stands for the papers' step t+1, so ``t = 0`` is the decoder step of DDPM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .losses import NATS_PER_BIT, discretized_gaussian_log_likelihood, mean_flat, normal_kl
from .options import DecoderCDF, LossType, MeanType, OptionError, VarType, check_variance_trainable, parse_enum

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Tensor = torch.Tensor


def standard_normal(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """N(0, I) drawn on the generator's own device, then placed on ``device``: a seed gives the same numbers
    whichever device computes with them (no generator: drawn on ``device``, None being torch's default device)."""
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=dtype).to(device)


class GaussianDiffusion:
    """The diffusion process of DDPM with the iDDPM and DDIM extensions.

    All schedule arrays are computed once in float64 from ``betas``; they are cast to the dtype of the
    inputs on use, so everything runs in float64 when given float64 tensors.

    A model is any callable ``model(x_t, t)`` that takes the original integer timestep indices ``t`` and returns
    the mean target (C channels) or, for learned variances, the mean target and the variance output (2C channels).
    """

    def __init__(
        self,
        betas: np.ndarray,
        *,
        mean_type: str | MeanType = MeanType.EPSILON,
        var_type: str | VarType = VarType.FIXED_LARGE,
        loss_type: str | LossType = LossType.SIMPLE,
        hybrid_lambda: float = 0.001,
        decoder_cdf: str | DecoderCDF = DecoderCDF.TANH,
    ):
        self.decoder_cdf = parse_enum(DecoderCDF, decoder_cdf, "decoder_cdf")
        self.mean_type = parse_enum(MeanType, mean_type, "mean_type")
        self.var_type = parse_enum(VarType, var_type, "var_type")
        self.loss_type = parse_enum(LossType, loss_type, "loss_type")
        check_variance_trainable(self.var_type, self.loss_type)
        if hybrid_lambda < 0:
            raise OptionError("hybrid_lambda", f"must be >= 0, got {hybrid_lambda}")
        self.hybrid_lambda = float(hybrid_lambda)

        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not ((betas > 0) & (betas < 1)).all():
            raise OptionError("betas", "must be a non-empty 1-D array with values in (0, 1) (β = 1 makes ᾱ_T = 0)")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        # DDPM eq. 7: the posterior q(x_{t-1} | x_t, x0) = N(μ̃_t, β̃_t I).
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃ is 0 at the first step; its log takes β̃ of the second step there (only Σ's log needs it finite).
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
            if self.num_timesteps > 1
            else np.array([betas[0]])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        # DDPM's σ² = β_t choice, with β̃_1 at the first step (DDPM's decoder).
        large = np.append(self.posterior_variance[1], betas[1:]) if self.num_timesteps > 1 else betas.copy()
        self.fixed_large_variance = large
        self._device_cache: dict[tuple[str, torch.device], torch.Tensor] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def learned_variance(self) -> bool:
        return self.var_type.learned

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep indices handed to the model; respaced processes map them back to the original T."""
        return t

    def _extract(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``self.<name>[t]`` as a tensor of ``like``'s dtype, broadcastable against ``like``."""
        key = (name, t.device)
        arr = self._device_cache.get(key)
        if arr is None:
            arr = torch.from_numpy(getattr(self, name)).to(t.device)
            self._device_cache[key] = arr
        out = arr[t].to(like.dtype)
        return out.reshape(out.shape + (1,) * (like.ndim - out.ndim))

    def _randn_like(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return standard_normal(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def call_model(self, model: Model, x_t: Tensor, t: Tensor) -> Tensor:
        return model(x_t, self.model_timesteps(t))

    # ---------------------------------------------------------- forward process
    def q_mean_variance(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """DDPM eq. 4: q(x_t | x0) = N(√ᾱ_t x0, (1 − ᾱ_t) I); returns (mean, variance, log_variance)."""
        mean = self._extract("sqrt_alphas_cumprod", t, x0) * x0
        variance = self._extract("alphas_cumprod", t, x0).neg().add(1.0).expand_as(x0)
        return mean, variance, torch.log(variance)

    def q_sample(
        self, x0: Tensor, t: Tensor, *, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """DDPM eq. 4, reparameterised: x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε."""
        if noise is None:
            noise = self._randn_like(x0, generator)
        return (
            self._extract("sqrt_alphas_cumprod", t, x0) * x0
            + self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def q_posterior_mean_variance(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """DDPM eqs. 6–7: q(x_{t−1} | x_t, x0) = N(μ̃_t(x_t, x0), β̃_t I); returns (mean, variance, log_variance)."""
        mean = self._extract("posterior_mean_coef1", t, x_t) * x0 + self._extract("posterior_mean_coef2", t, x_t) * x_t
        variance = self._extract("posterior_variance", t, x_t).expand_as(x_t)
        log_variance = self._extract("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        return mean, variance, log_variance

    # ------------------------------------------------- parameterisations of x0
    def predict_xstart_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """DDPM eq. 4 solved for x0: x0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t."""
        return (
            self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """DDPM eq. 4 solved for ε (DDIM eq. 12's ε_θ when the model predicts x0)."""
        return (self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x0) / self._extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    def predict_xstart_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x0 = √ᾱ_t x_t − √(1 − ᾱ_t) v, for v = √ᾱ_t ε − √(1 − ᾱ_t) x0."""
        return (
            self._extract("sqrt_alphas_cumprod", t, x_t) * x_t
            - self._extract("sqrt_one_minus_alphas_cumprod", t, x_t) * v
        )

    def predict_xstart_from_xprev(self, x_t: Tensor, t: Tensor, xprev: Tensor) -> Tensor:
        """DDPM eq. 7 solved for x0 given μ̃_t."""
        return (xprev - self._extract("posterior_mean_coef2", t, x_t) * x_t) / self._extract(
            "posterior_mean_coef1", t, x_t
        )

    def mean_target(self, x0: Tensor, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The regression target of the network's mean output for L_simple (DDPM eq. 14 and Table 2)."""
        if self.mean_type is MeanType.EPSILON:
            return noise
        if self.mean_type is MeanType.START_X:
            return x0
        if self.mean_type is MeanType.VELOCITY:
            return (
                self._extract("sqrt_alphas_cumprod", t, x0) * noise
                - self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * x0
            )
        return self.q_posterior_mean_variance(x0, x_t, t)[0]

    # ---------------------------------------------------------- reverse process
    def split_output(self, output: Tensor) -> tuple[Tensor, Tensor | None]:
        """Split a model output into its mean part and (for learned variances) its variance part."""
        if not self.learned_variance:
            return output, None
        channels = output.shape[1] // 2
        return output[:, :channels], output[:, channels:]

    def model_log_variance(self, var_output: Tensor | None, x_t: Tensor, t: Tensor) -> Tensor:
        """log Σ_θ(x_t, t): fixed (DDPM §3.2), learned directly, or iDDPM eq. 15 with v = (r + 1) / 2."""
        if self.var_type is VarType.FIXED_SMALL:
            return self._extract("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        if self.var_type is VarType.FIXED_LARGE:
            return torch.log(self._extract("fixed_large_variance", t, x_t)).expand_as(x_t)
        if self.var_type is VarType.LEARNED:
            assert var_output is not None, "a learned variance needs the network's variance channels"
            return var_output
        assert var_output is not None, "a learned variance needs the network's variance channels"
        log_small = self._extract("posterior_log_variance_clipped", t, x_t)
        log_large = torch.log(self._extract("betas", t, x_t))
        v = (var_output + 1.0) / 2.0
        return v * log_large + (1.0 - v) * log_small

    def p_mean_variance_from_output(
        self, output: Tensor, x_t: Tensor, t: Tensor, *, clip_denoised: bool = True
    ) -> dict[str, Tensor]:
        """DDPM eq. 1's p_θ(x_{t−1} | x_t) = N(μ_θ, Σ_θ) from a raw model output."""
        mean_output, var_output = self.split_output(output)
        log_variance = self.model_log_variance(var_output, x_t, t)
        if self.mean_type is MeanType.EPSILON:
            pred_xstart = self.predict_xstart_from_eps(x_t, t, mean_output)
        elif self.mean_type is MeanType.START_X:
            pred_xstart = mean_output
        elif self.mean_type is MeanType.VELOCITY:
            pred_xstart = self.predict_xstart_from_v(x_t, t, mean_output)
        else:
            pred_xstart = self.predict_xstart_from_xprev(x_t, t, mean_output)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1.0, 1.0)
        # DDPM eq. 11 for ε: μ_θ equals μ̃_t(x_t, x̂0); written through x̂0 it serves every parameterisation.
        mean = self.q_posterior_mean_variance(pred_xstart, x_t, t)[0]
        return {
            "mean": mean,
            "variance": torch.exp(log_variance),
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "model_output": mean_output,
        }

    def p_mean_variance(self, model: Model, x_t: Tensor, t: Tensor, *, clip_denoised: bool = True) -> dict[str, Tensor]:
        """DDPM eq. 1: mean, variance, log_variance and the x0 prediction of p_θ(x_{t−1} | x_t)."""
        return self.p_mean_variance_from_output(self.call_model(model, x_t, t), x_t, t, clip_denoised=clip_denoised)

    def p_sample(
        self,
        model: Model,
        x_t: Tensor,
        t: Tensor,
        *,
        clip_denoised: bool = True,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """DDPM Algorithm 2, one step: x_{t−1} = μ_θ + σ z, with z = 0 at the last step."""
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised)
        if noise is None:
            noise = self._randn_like(x_t, generator)
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    # -------------------------------------------------------------------- DDIM
    def ddim_sigma(self, t: Tensor, eta: float, like: Tensor) -> Tensor:
        """DDIM eq. 16: σ_t(η) = η √((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t−1})."""
        a = self._extract("alphas_cumprod", t, like)
        a_prev = self._extract("alphas_cumprod_prev", t, like)
        return eta * torch.sqrt((1 - a_prev) / (1 - a)) * torch.sqrt(1 - a / a_prev)

    def ddim_step(
        self,
        model: Model,
        x_t: Tensor,
        t: Tensor,
        *,
        eta: float = 0.0,
        clip_denoised: bool = True,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """DDIM eq. 12: x_{t−1} = √ᾱ_{t−1} x̂0 + √(1 − ᾱ_{t−1} − σ²) ε̂ + σ z, over this process's own steps."""
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised)
        eps = self.predict_eps_from_xstart(x_t, t, out["pred_xstart"])
        a_prev = self._extract("alphas_cumprod_prev", t, x_t)
        sigma = self.ddim_sigma(t, eta, x_t)
        mean = torch.sqrt(a_prev) * out["pred_xstart"] + torch.sqrt((1 - a_prev - sigma**2).clamp(min=0.0)) * eps
        if eta > 0:
            if noise is None:
                noise = self._randn_like(x_t, generator)
            nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
            mean = mean + nonzero * sigma * noise
        return {"sample": mean, "pred_xstart": out["pred_xstart"]}

    def ddim_reverse_step(
        self, model: Model, x_prev: Tensor, t: Tensor, *, model_t: Tensor | None = None, clip_denoised: bool = False
    ) -> dict[str, Tensor]:
        """DDIM eq. 12 inverted at η = 0 (an Euler step of the ODE, DDIM eq. 14): x_t from x_{t−1}.

        ε̂ = ε_θ(x_{t−1}, ``model_t``): the source step t − 1 for DDIM eq. 14's Euler step, or t (the default), with
        which the step undoes ``ddim_step`` exactly for the same ε̂.
        """
        model_t = t if model_t is None else model_t
        out = self.p_mean_variance(model, x_prev, model_t, clip_denoised=clip_denoised)
        eps = self.predict_eps_from_xstart(x_prev, model_t, out["pred_xstart"])
        a = self._extract("alphas_cumprod", t, x_prev)
        a_prev = self._extract("alphas_cumprod_prev", t, x_prev)
        x0 = (x_prev - torch.sqrt(1 - a_prev) * eps) / torch.sqrt(a_prev)
        return {"sample": torch.sqrt(a) * x0 + torch.sqrt(1 - a) * eps, "pred_xstart": x0}

    # ------------------------------------------------------- variational bound
    def vb_terms_from_output(
        self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, *, clip_denoised: bool = False
    ) -> dict[str, Tensor]:
        """DDPM eq. 5 term at t, in bits/dim: L_{t−1} = KL(q(x_{t−1}|x_t,x0) ‖ p_θ(x_{t−1}|x_t)), or L_0 at t = 0."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x0, x_t, t)
        out = self.p_mean_variance_from_output(output, x_t, t, clip_denoised=clip_denoised)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / NATS_PER_BIT
        decoder_nll = (
            -mean_flat(
                discretized_gaussian_log_likelihood(x0, out["mean"], 0.5 * out["log_variance"], self.decoder_cdf)
            )
            / NATS_PER_BIT
        )
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def vb_terms_bpd(
        self, model: Model, x0: Tensor, x_t: Tensor, t: Tensor, *, clip_denoised: bool = False
    ) -> dict[str, Tensor]:
        """Per-example L_t in bits/dim (DDPM eq. 5; decoder NLL, eq. 13, at t = 0) and the x0 prediction."""
        return self.vb_terms_from_output(self.call_model(model, x_t, t), x0, x_t, t, clip_denoised=clip_denoised)

    def prior_bpd(self, x0: Tensor) -> Tensor:
        """L_T = KL(q(x_T | x0) ‖ N(0, I)) in bits/dim (DDPM eq. 5)."""
        t = torch.full((x0.shape[0],), self.num_timesteps - 1, device=x0.device, dtype=torch.long)
        mean, _, log_variance = self.q_mean_variance(x0, t)
        zero = torch.zeros_like(mean)
        return mean_flat(normal_kl(mean, log_variance, zero, zero)) / NATS_PER_BIT

    def training_losses(
        self,
        model: Model,
        x0: Tensor,
        t: Tensor,
        *,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Per-example training loss (DDPM eq. 14 / iDDPM §3.1) with its ``mse`` and, when used, ``vb`` parts.

        ``kl`` is DDPM's true-bound objective as its code optimises it: L_t for the sampled t in bits/dim. ``vlb``
        is iDDPM's unbiased estimate T·L_t of L_vlb = Σ_t L_t for uniform t. ``hybrid`` adds λ·T·L_t computed with
        the mean output frozen (stop-gradient), so L_vlb trains only the variance (iDDPM §3.1). A timestep
        sampler's importance weights multiply the returned loss.
        """
        if noise is None:
            noise = self._randn_like(x0, generator)
        x_t = self.q_sample(x0, t, noise=noise)
        output = self.call_model(model, x_t, t)
        mean_output, var_output = self.split_output(output)
        terms = {"mse": mean_flat((self.mean_target(x0, x_t, t, noise) - mean_output) ** 2)}
        T = self.num_timesteps
        if self.loss_type is LossType.SIMPLE:
            terms["loss"] = terms["mse"]
        elif self.loss_type in (LossType.KL, LossType.VLB):
            terms["vb"] = self.vb_terms_from_output(output, x0, x_t, t)["output"]
            terms["loss"] = terms["vb"] * (T if self.loss_type is LossType.VLB else 1)
        else:
            frozen = mean_output.detach() if var_output is None else torch.cat([mean_output.detach(), var_output], 1)
            terms["vb"] = self.vb_terms_from_output(frozen, x0, x_t, t)["output"]
            terms["loss"] = terms["mse"] + self.hybrid_lambda * T * terms["vb"]
        return terms

    @torch.no_grad()
    def calc_bpd_loop(
        self,
        model: Model,
        x0: Tensor,
        *,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
        noise_fn: Callable[[], Tensor] | None = None,
        on_term: Callable[[int], None] | None = None,
    ) -> dict[str, Tensor]:
        """The full variational bound in bits/dim (DDPM eq. 5): L_T + Σ_{t>1} L_{t−1} + L_0, with every term.

        Returns per-example ``total_bpd`` and ``prior_bpd``, and per-example-per-t ``vb`` (bits/dim),
        ``xstart_mse`` (MSE of x̂0 on [-1, 1]) and ``mse`` (of ε̂), index t as in this process. Each step's ε
        comes from ``noise_fn()`` if given (e.g. one generator per image), else from ``generator``.
        ``on_term(n)``, if given, is called after each of the T terms with the batch size (progress).
        """
        n, T = x0.shape[0], self.num_timesteps
        vb = torch.zeros(n, T, device=x0.device, dtype=x0.dtype)
        xstart_mse = torch.zeros_like(vb)
        mse = torch.zeros_like(vb)
        for step in reversed(range(T)):
            t = torch.full((n,), step, device=x0.device, dtype=torch.long)
            noise = self._randn_like(x0, generator) if noise_fn is None else noise_fn()
            x_t = self.q_sample(x0, t, noise=noise)
            out = self.vb_terms_bpd(model, x0, x_t, t, clip_denoised=clip_denoised)
            vb[:, step] = out["output"]
            xstart_mse[:, step] = mean_flat((out["pred_xstart"] - x0) ** 2)
            mse[:, step] = mean_flat((self.predict_eps_from_xstart(x_t, t, out["pred_xstart"]) - noise) ** 2)
            if on_term is not None:
                on_term(n)
        prior_bpd = self.prior_bpd(x0)
        return {
            "total_bpd": vb.sum(dim=1) + prior_bpd,
            "prior_bpd": prior_bpd,
            "vb": vb,
            "xstart_mse": xstart_mse,
            "mse": mse,
        }
