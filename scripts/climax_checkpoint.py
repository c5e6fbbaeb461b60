#!/usr/bin/python3
"""ClimaX weights <-> seqvit model files (docs/checkpoints.md "ClimaX weights").

  climax_checkpoint.py import CKPT MODEL.safetensors --variables t2m,z_500,... [--out-variables ..]
  climax_checkpoint.py export MODEL.safetensors CKPT [--base CKPT]

import: CKPT is a ClimaX PyTorch Lightning checkpoint ({"state_dict": {"net.<name>": tensor}},
the module of microsoft/ClimaX src/climax/arch.py) or a bare state dict; stacked patch embeddings
(parallel_patch_embed) and early "channel_*" names are read as ClimaX's own loader reads them. It holds one token
embedding, one var_embed row and one set of head outputs per *default variable* of the ClimaX
model; the seqvit model keeps those of --variables (seqvit names, in that order), mapped to
ClimaX names by NAME_TABLE below. Everything else (the variable aggregation, pos_embed, the
lead-time embedding, the blocks, the final norm, the head's hidden layers) is copied unchanged:
seqvit's parameter names and layouts are ClimaX's (docs/checkpoints.md "Model file"). The
result's forward is ClimaX's forward with `variables` = --variables and `out_variables` =
--out-variables.

What the state dict does not say is taken from the checkpoint's own "seqvit.climax" entry (the
files `export` writes), else from the flags, else from ClimaX's defaults: the default-variable
list (--climax-variables; ClimaX's 48 of configs/global_forecast_climax.yaml), the grid
(--img-size H W; 32 64) and the heads (--num-heads; 16). The embedding width, patch size, depth,
decoder depth and MLP ratio are read from the tensor shapes.

export: the seqvit model (a model file or a forecast checkpoint, whose climatology.* tensors are
left out) back into a Lightning checkpoint. With --base CKPT the result is that
checkpoint with the model's tensors written into it (the model's variables' rows of token_embeds,
var_embed and the output layer; every shared tensor), the other variables' rows kept; without it,
a checkpoint whose default variables are the model's own. Either way import of the export gives
back the same model file values, bit for bit.

Needs torch (Debian's python3-torch) and numpy; safetensors is read and written by hand
(scripts/torch_reference.py).
"""

import argparse
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402

# ClimaX's default variables (configs/global_forecast_climax.yaml, the pretrained 5.625 deg
# models), in the order of their token embeddings and var_embed rows.
CLIMAX_LEVELS = [50, 250, 500, 600, 700, 850, 925]
CLIMAX_DEFAULT_VARS = (
    ["land_sea_mask", "orography", "lattitude", "2m_temperature", "10m_u_component_of_wind",
     "10m_v_component_of_wind"]
    + [f"{name}_{lev}" for name in ("geopotential", "u_component_of_wind", "v_component_of_wind",
                                    "temperature", "relative_humidity", "specific_humidity")
       for lev in CLIMAX_LEVELS])

# seqvit names <-> ClimaX names: the one table. Surface and constant fields by name; a pressure
# level field `x_L` (L in hPa, docs/data.md) by its variable's long name with the same level.
NAME_TABLE = {
    "lsm": "land_sea_mask",
    "orography": "orography",
    "lat2d": "lattitude",  # sic: ClimaX's spelling of WeatherBench's 2-D latitude field
    "t2m": "2m_temperature",
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
}
LEVEL_TABLE = {
    "z": "geopotential",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "t": "temperature",
    "r": "relative_humidity",
    "q": "specific_humidity",
}


def to_climax(name):
    if name in NAME_TABLE:
        return NAME_TABLE[name]
    m = re.fullmatch(r"([a-z]+)_(\d+)", name)
    if m and m.group(1) in LEVEL_TABLE:
        return f"{LEVEL_TABLE[m.group(1)]}_{m.group(2)}"
    raise SystemExit(f"error: seqvit variable '{name}' has no ClimaX name; known: "
                     f"{', '.join(sorted(NAME_TABLE))} and z_L, u_L, v_L, t_L, r_L, q_L "
                     f"(L in hPa)")


def to_seqvit(name):
    for k, v in NAME_TABLE.items():
        if v == name:
            return k
    for k, v in LEVEL_TABLE.items():
        m = re.fullmatch(re.escape(v) + r"_(\d+)", name)
        if m:
            return f"{k}_{m.group(1)}"
    return None


def fail(msg):
    raise SystemExit(f"error: {msg}")


# ----------------------------------------------------------------------------------------------
# reading a ClimaX checkpoint

def load_climax(path):
    """Returns (state dict without the "net." prefix as float32 numpy, the seqvit.climax entry)."""
    try:
        ck = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file
        fail(f"{path}: cannot read a PyTorch checkpoint: {e}")
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else None
    if not isinstance(sd, dict):
        fail(f"{path}: no state dict (expected {{'state_dict': {{'net.<name>': tensor}}}})")
    net = {k[4:]: v for k, v in sd.items() if k.startswith("net.")}
    if not net:  # a bare ClimaX state dict
        net = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    # as ClimaX's own loader (GlobalForecastModule.load_pretrained_weights): early checkpoints
    # name the variable tensors "channel_*"
    net = {k.replace("channel", "var"): v for k, v in net.items()}
    if "var_embed" not in net:
        fail(f"{path}: no 'net.var_embed' tensor: not a ClimaX checkpoint (tensors: "
             f"{', '.join(sorted(sd)[:8])}, ...)")
    out = {k: v.detach().float().numpy() for k, v in net.items()}
    # parallel_patch_embed=True (ParallelVarPatchEmbed): the per-variable convolutions stacked,
    # proj_weights [Vd, D, 1, p, p] and proj_biases [Vd, D]: the same tensors, split
    if "token_embeds.proj_weights" in out:
        w, b = out.pop("token_embeds.proj_weights"), out.pop("token_embeds.proj_biases")
        for i in range(w.shape[0]):
            out[f"token_embeds.{i}.proj.weight"] = w[i]
            out[f"token_embeds.{i}.proj.bias"] = b[i]
    meta = ck.get("seqvit.climax", {}) if isinstance(ck, dict) else {}
    return out, meta


def climax_shape(sd, path, heads=None, img=None):
    """The ClimaX architecture of a state dict: what the shapes say, the rest from the caller."""
    D = sd["var_embed"].shape[2]
    Vd = sd["var_embed"].shape[1]
    p = sd["token_embeds.0.proj.weight"].shape[2]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    heads_lin = sorted(int(k.split(".")[1]) for k in sd if k.startswith("head.") and
                       k.endswith(".weight"))
    decoder_depth = len(heads_lin) - 1
    F = sd["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * D
    Lp = sd["pos_embed"].shape[1]
    H, W = img
    if H % p or W % p or (H // p) * (W // p) != Lp:
        fail(f"{path}: pos_embed has {Lp} patches, but a {H}x{W} grid with patch {p} has "
             f"{(H // p) * (W // p) if H % p == 0 and W % p == 0 else 'no whole number of'}; "
             f"give the grid with --img-size H W")
    if D % heads:
        fail(f"{path}: {heads} heads do not divide the embedding width {D}; give --num-heads")
    missing = [k for k in ("var_query", "var_agg.in_proj_weight") if k not in sd]
    if missing:
        fail(f"{path}: no {', '.join(missing)}: seqvit imports ClimaX's aggregate tokenization")
    return {"img_size": [H, W], "patch_size": p, "embed_dim": D, "depth": depth,
            "decoder_depth": decoder_depth, "num_heads": heads, "mlp_ratio": F / D,
            "climax_variables": Vd}


def head_out_name(K):
    return f"head.{2 * K}"


def head_rows(p, V, ids):
    """Rows of the output layer [V*p*p, D] ((p_row*p + p_col)*V + v) of variables ids, in order."""
    return [k * V + i for k in range(p * p) for i in ids]


# ----------------------------------------------------------------------------------------------

def cmd_import(a):
    sd, meta = load_climax(a.checkpoint)
    default_vars = (a.climax_variables.split(",") if a.climax_variables
                    else meta.get("default_vars", CLIMAX_DEFAULT_VARS))
    Vd = sd["var_embed"].shape[1]
    if len(default_vars) != Vd:
        fail(f"{a.checkpoint}: var_embed has {Vd} rows, but the default-variable list has "
             f"{len(default_vars)} ({'--climax-variables' if a.climax_variables else 'ClimaX'}"
             f"'s); give the checkpoint's list with --climax-variables")
    heads = a.num_heads or meta.get("num_heads", 16)
    img = a.img_size or meta.get("img_size", [32, 64])
    arch = climax_shape(sd, a.checkpoint, heads, img)
    variables = a.variables.split(",")
    out_variables = a.out_variables.split(",") if a.out_variables else variables
    for v in out_variables:
        if v not in variables:
            fail(f"--out-variables: '{v}' is not one of --variables {','.join(variables)}")
    index = {n: i for i, n in enumerate(default_vars)}
    ids = []
    for v in variables:
        cn = to_climax(v)
        if cn not in index:
            avail = [f"{to_seqvit(n) or '(no seqvit name)'} ({n})" for n in default_vars]
            fail(f"variable '{v}' (ClimaX '{cn}') is not among the checkpoint's "
                 f"{len(default_vars)} variables; available: {', '.join(avail)}")
        ids.append(index[cn])
    p, K = arch["patch_size"], arch["decoder_depth"]
    out = {}
    for k, t in sd.items():
        if k.startswith("token_embeds.") or k == "var_embed" or k.startswith(head_out_name(K) + "."):
            continue
        out[k] = t
    for j, i in enumerate(ids):
        for part in ("weight", "bias"):
            out[f"token_embeds.{j}.proj.{part}"] = sd[f"token_embeds.{i}.proj.{part}"]
    out["var_embed"] = sd["var_embed"][:, ids, :]
    rows = head_rows(p, Vd, ids)
    out[head_out_name(K) + ".weight"] = sd[head_out_name(K) + ".weight"][rows]
    out[head_out_name(K) + ".bias"] = sd[head_out_name(K) + ".bias"][rows]
    cfg = {"img_size": arch["img_size"], "patch_size": p, "embed_dim": arch["embed_dim"],
           "depth": arch["depth"], "decoder_depth": K, "num_heads": heads,
           "mlp_ratio": arch["mlp_ratio"], "variables": variables,
           "out_variables": out_variables, "tokenization": "aggregate"}
    info = {"checkpoint": os.path.abspath(a.checkpoint), "default_vars": default_vars,
            "climax_names": [default_vars[i] for i in ids]}
    write_safetensors(a.model, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()},
                      {"format": "pt", "seqvit.config": json.dumps(cfg),
                       "seqvit.climax": json.dumps(info)})
    print(f"imported {a.checkpoint}: {len(variables)} of {Vd} ClimaX variables "
          f"({', '.join(f'{v}={default_vars[i]}' for v, i in zip(variables, ids))}), D="
          f"{arch['embed_dim']}, depth {arch['depth']}, {heads} heads, grid {img[0]}x{img[1]}, "
          f"patch {p} -> {a.model}")
    return 0


def cmd_export(a):
    tensors, meta = read_safetensors(a.model)
    # a forecast checkpoint also holds its climatology (climatology.<output>): not parameters
    tensors = {k: v for k, v in tensors.items() if not k.startswith("climatology.")}
    if "seqvit.config" not in meta:
        fail(f"{a.model}: no seqvit.config metadata: not a seqvit model file")
    cfg = json.loads(meta["seqvit.config"])
    if cfg.get("tokenization", "aggregate") != "aggregate":
        fail(f"{a.model}: {cfg['tokenization']} tokenization has no ClimaX counterpart (ClimaX "
             f"aggregates the variables); only aggregate models export")
    variables = cfg["variables"]
    names = [to_climax(v) for v in variables]
    p, K, V = cfg["patch_size"], cfg["decoder_depth"], len(variables)
    if a.base:
        base, bmeta = load_climax(a.base)
        default_vars = (a.climax_variables.split(",") if a.climax_variables
                        else bmeta.get("default_vars", CLIMAX_DEFAULT_VARS))
        Vd = base["var_embed"].shape[1]
        if len(default_vars) != Vd:
            fail(f"{a.base}: var_embed has {Vd} rows, but the default-variable list has "
                 f"{len(default_vars)}; give the checkpoint's list with --climax-variables")
        index = {n: i for i, n in enumerate(default_vars)}
        for v, n in zip(variables, names):
            if n not in index:
                fail(f"variable '{v}' (ClimaX '{n}') is not among the --base checkpoint's "
                     f"variables; available: {', '.join(default_vars)}")
        ids = [index[n] for n in names]
        sd = {k: v.copy() for k, v in base.items()}
        for k, t in tensors.items():
            if k.startswith("token_embeds.") or k == "var_embed" or \
                    k.startswith(head_out_name(K) + "."):
                continue
            if k not in sd or sd[k].shape != t.shape:
                fail(f"tensor '{k}': the model has shape {list(t.shape)}, the --base checkpoint "
                     f"{list(sd[k].shape) if k in sd else 'none'}")
            sd[k] = t
        for j, i in enumerate(ids):
            for part in ("weight", "bias"):
                k_from, k_to = f"token_embeds.{j}.proj.{part}", f"token_embeds.{i}.proj.{part}"
                if sd[k_to].shape != tensors[k_from].shape:
                    fail(f"tensor '{k_from}': the model has shape {list(tensors[k_from].shape)}, "
                         f"the --base checkpoint's '{k_to}' {list(sd[k_to].shape)}")
                sd[k_to] = tensors[k_from]
        sd["var_embed"][:, ids, :] = tensors["var_embed"]
        rows = head_rows(p, Vd, ids)
        for part in ("weight", "bias"):
            sd[f"{head_out_name(K)}.{part}"][rows] = tensors[f"{head_out_name(K)}.{part}"]
    else:
        default_vars = names
        sd = dict(tensors)
    extra = {"default_vars": default_vars, "img_size": cfg["img_size"],
             "num_heads": cfg["num_heads"], "seqvit_config": cfg}
    torch.save({"state_dict": {"net." + k: torch.from_numpy(np.ascontiguousarray(v))
                               for k, v in sorted(sd.items())},
                "seqvit.climax": extra}, a.checkpoint)
    print(f"exported {a.model} ({V} variables{', into ' + a.base if a.base else ''}) -> "
          f"{a.checkpoint} ({len(default_vars)} ClimaX variables)")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    im = sub.add_parser("import", help="ClimaX Lightning checkpoint -> seqvit model file")
    im.add_argument("checkpoint")
    im.add_argument("model")
    im.add_argument("--variables", required=True, help="seqvit input variables, comma separated")
    im.add_argument("--out-variables", default="", help="default: --variables")
    ex = sub.add_parser("export", help="seqvit model file -> ClimaX Lightning checkpoint")
    ex.add_argument("model")
    ex.add_argument("checkpoint")
    ex.add_argument("--base", default="", help="write into this ClimaX checkpoint's tensors")
    for p in (im, ex):
        p.add_argument("--climax-variables", default="",
                       help="the checkpoint's default variables (ClimaX names, comma separated)")
    im.add_argument("--num-heads", type=int, default=0, help="default: the checkpoint's, or 16")
    im.add_argument("--img-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="default: the checkpoint's, or 32 64")
    a = ap.parse_args(argv)
    return cmd_import(a) if a.cmd == "import" else cmd_export(a)


if __name__ == "__main__":
    sys.exit(main())
