"""Video Policy's model (arXiv 2508.00795): a text-conditioned SVD video U-Net whose intermediate
features, through a 3D-CNN adapter, condition a diffusion action head; trained with EDM losses and
sampled jointly (video + actions) with classifier-free guidance. Plus the DP-ResNet baseline.

Terminology (paper -> code):

| paper                                      | code                                                        |
|--------------------------------------------|-------------------------------------------------------------|
| video model (SVD-XT U-Net)                 | `video_unet.build_video_unet`, `VideoPolicyModel.unet`      |
| text conditioning (CLIP text embedding)    | `text.TextEncoder`, `text.TextEmbeddingCache`               |
| VAE, latents, conditioning latents         | `vae.build_vae`, `vae.encode_clip` -> `ClipLatents`         |
| multi-view video (1 pad + 3 cameras x 8)   | `multiview.pack_video`, `multiview.pack_condition`          |
| layers 9/14/17/20/23 (feature taps)        | `config.PAPER_TAPS`, `feature_taps.FeatureTaps`             |
| CNN adapter                                | `adapter.Adapter`                                           |
| action decoder (Diffusion Policy U-Net)    | `action_head.ActionUNet1D`                                  |
| EDM / v-prediction / lognormal sigma       | `edm` (`v_scalings`, `training_sigmas`, `karras_sigmas`)    |
| stage 1 / stage 2 / joint training         | `model(batch, mode="stage1" / "stage2" / "joint")`         |
| action horizon (32), executed steps (16)   | `ActionHeadConfig.horizon`; the evaluation loop executes 16 |
| video horizon = frames x stride            | `ModelConfig.frames_per_camera` (stride lives in the clips) |
| Euler sampler, 30 steps, CFG 2.0           | `sampler.sample_joint`, `SamplerConfig`                     |
| decoupled ablation (few U-Net passes)      | `sampler.sample_fast`, `EDMConfig.action_sigma="independent"` |
| DP-ResNet baseline                         | `baseline.DPResNetModel` (`ModelConfig.kind="dp_resnet"`)   |
| either kind: build, save, load             | `build.build_model`, `base.PolicyModel` (`save_pretrained`, `from_pretrained`) |
| policy (act -> action chunk)               | `policy.VideoPolicy.act`, `policy.to_suite_actions`         |

The tokenizer's BPE vocabulary is fetched once per machine: ``python -m videopolicy.models.fetch_bpe``.

Typical use::

    cfg = ModelConfig(preset="tiny")                  # or preset="svd-xt", unet.pretrained=...
    model = build_model(cfg).set_mode("stage2")
    opt = torch.optim.Adam(model.param_groups("stage2"))   # lr 1e-5 U-Net, 5x for adapter + head
    out = model(batch, "stage2"); out.loss.backward(); opt.step()
    model.save_pretrained(d, extra={"normalizer": normalizer.to_dict(), "cameras": cams})
    policy = VideoPolicy.from_pretrained(d, suite="robocasa"); chunk = policy.act(images, "open the drawer")
"""

# Names are imported when first used (PEP 562), not with the package: `videopolicy.config` reads the
# torch-free `models.config`, and loading or planning a sweep must not pay for torch, diffusers and
# transformers (seconds) through this package's __init__.
_EXPORTS = {
    "videopolicy.models.config": ("MODES", "PAPER_TAPS", "PRESETS", "ActionHeadConfig", "AdapterConfig",
                                  "BaselineConfig", "EDMConfig", "ModelConfig", "OptimConfig", "SamplerConfig",
                                  "TextConfig", "VAEConfig", "VideoUNetConfig"),
    "videopolicy.models.base": ("LossOutput", "SampleOutput"),
    # PolicyModel through `build`: importing it defines every kind, so PolicyModel.from_pretrained loads any
    "videopolicy.models.build": ("PolicyModel", "build_model"),
    "videopolicy.models.model": ("VideoPolicyModel",),
    "videopolicy.models.policy": ("ActionNormalizer", "VideoPolicy", "to_suite_actions"),
    "videopolicy.models.text": ("TextEmbeddingCache", "ensure_bpe_vocab"),
    "videopolicy.models.vae": ("ClipLatents",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:  # AttributeError lets `from videopolicy.models import edm` import the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
