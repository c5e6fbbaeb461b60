#!/usr/bin/python3
"""PyTorch parity oracle for seqvit's ClimaX model (docs/model.md).

Self-contained: needs only torch (Debian's python3-torch 1.13 is enough) and numpy. It builds
the ClimaX model in either tokenization with parameter names identical to the ClimaX PyTorch
module, perturbs every parameter with small noise, makes a structured random batch and writes:

  DIR/model.safetensors      all parameters (float32), __metadata__["seqvit.config"] = config JSON
  DIR/batch.safetensors      x [B,V,H,W], y [B,Vo,H,W], lead_times [B] (hours), lat [H] (degrees)
  DIR/reference.safetensors  pred [B,Vo,H,W], loss [1], grad.<name> for every parameter; computed
                             in float64 from the float32 parameters/batch, stored as float32
  DIR/train_reference.json   AdamW + clipping + warm-up/cosine schedule: losses, grad norms and
                             learning rates of --steps steps on the same batch (float64)
  DIR/train_final.safetensors the parameters after those --steps updates (float64 -> float32)
  DIR/dropout_reference.safetensors  as reference.safetensors, with dropout 0.1 and drop-path 0.2
                             drawn by seqvit's hashed masks (seed 7, step 3) at ClimaX's places

With --climax-layout it writes instead a ClimaX-layout PyTorch Lightning checkpoint
(DIR/climax.ckpt, {"state_dict": {"net.<name>": ...}}, microsoft/ClimaX's module names with one
token embedding and var_embed row per default variable) with random weights, a batch for a subset
of the variables and that forward's prediction (climax_layout_main; tests/cli/ConvertClimaXTest).

Run with Debian's interpreter:
  /usr/bin/python3 scripts/torch_reference.py --out /tmp/ref_agg --tokenization aggregate
  /usr/bin/python3 scripts/torch_reference.py --out /tmp/ref_pv --tokenization per_variable --check

--check additionally: reads every file back with an independent safetensors reader and compares,
recomputes pred/loss from the files, compares the nn.Module forward with a hand-written
functional forward (plain tensor ops, the form the C++ code implements), and compares autograd
gradients with central finite differences in float64 on entries of several parameters.
Exit status 0 means all checks passed.

Conventions pinned down here (the C++ implementation must match them):
  * PatchEmbed: Conv2d(1, D, p, stride p) per variable; patches in row-major (patch_row,
    patch_col) order, l = r*(W/p) + c; weight [D,1,p,p] indexed [d,0,p_row,p_col].
  * aggregate: e[b,v,l,:] = conv_v(x[b,v]) + var_embed[0,v]; per patch one nn.MultiheadAttention
    (num_heads heads, scale 1/sqrt(D/Hh)) with query var_query[0,0] and keys/values e[b,:,l,:];
    in_proj_weight rows [0,D) = q, [D,2D) = k, [2D,3D) = v; head h uses columns h*d..h*d+d-1 of
    each projection's output; then out_proj.
  * per_variable: token index = v*Lp + l; token = conv_v(x[b,v])[l] + var_embed[0,v] + pos_embed[0,l].
  * + lead_time_embed(t/100) with t in hours, Linear(1,D): t/100 * weight[:,0] + bias.
  * Block: qkv Linear(D,3D) output column j = s*D + h*d + i (s in q,k,v); softmax(q k^T / sqrt(d)) v;
    heads concatenated as h*d + i; proj; residual; LN2; fc1; exact GELU; fc2; residual.
  * head: [Linear(D,D), GELU] * decoder_depth, Linear(D, V*p*p) (aggregate; output index
    (p_row*p + p_col)*V + v) or Linear(D, p*p) (per_variable; output index p_row*p + p_col).
  * pred keeps out_variables by name, in out_variables order.
  * loss = mean_{b,o,i,j} w_i (pred - y)^2, w_i = cos(deg2rad(lat_i)) / mean_i cos(deg2rad(lat_i)).
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# safetensors, by hand (no dependency on the safetensors package)

_DT_TO_STR = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64",
              np.dtype("int32"): "I32"}
_STR_TO_DT = {v: k for k, v in _DT_TO_STR.items()}


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: array-like}; written in sorted-name order, little-endian; header padded
    with spaces to a multiple of 8."""
    names = sorted(tensors)
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for n in names:
        t = tensors[n]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        a = np.ascontiguousarray(t)
        if a.dtype not in _DT_TO_STR:
            raise ValueError(f"{n}: unsupported dtype {a.dtype}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[n] = {"dtype": _DT_TO_STR[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata dict). Validates offsets (contiguous, in range)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: truncated")
    (hl,) = struct.unpack("<Q", raw[:8])
    if hl % 8 != 0 or 8 + hl > len(raw):
        raise ValueError(f"{path}: bad header length {hl}")
    header = json.loads(raw[8:8 + hl].decode("utf-8"))
    data = raw[8 + hl:]
    meta = header.pop("__metadata__", {})
    out = {}
    spans = []
    for n, info in header.items():
        dt = _STR_TO_DT[info["dtype"]].newbyteorder("<")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        if not (0 <= b <= e <= len(data)):
            raise ValueError(f"{path}: {n}: offsets out of range")
        if (e - b) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise ValueError(f"{path}: {n}: size mismatch")
        out[n] = np.frombuffer(data[b:e], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
        spans.append((b, e, n))
    spans.sort()
    pos = 0
    for b, e, n in spans:
        if b != pos:
            raise ValueError(f"{path}: {n}: gap/overlap at {b} (expected {pos})")
        pos = e
    if pos != len(data):
        raise ValueError(f"{path}: trailing bytes")
    # Sorted-name order of data, as written by write_safetensors.
    if [n for _, _, n in spans] != sorted(out):
        raise ValueError(f"{path}: tensors not in sorted-name order")
    return out, meta


# ----------------------------------------------------------------------------------------------
# Sin-cos embeddings (MAE / ClimaX code, reproduced exactly)

def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000 ** omega
    pos = np.asarray(pos, dtype=np.float64).reshape(-1)
    out = np.einsum("m,d->md", pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size_h, grid_size_w):
    # As in ClimaX: meshgrid(w, h) so the FIRST half of the channels encodes the patch column
    # and the second half the patch row; patches in row-major order.
    grid_h = np.arange(grid_size_h, dtype=np.float32)
    grid_w = np.arange(grid_size_w, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size_h, grid_size_w])
    emb_a = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_b = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_a, emb_b], axis=1)  # [Lp, D]


# ----------------------------------------------------------------------------------------------
# The model

class PatchEmbed(nn.Module):
    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):  # [B,1,H,W] -> [B,Lp,D]
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        h = self.num_heads
        d = D // h
        qkv = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (d ** -0.5)
        a = a.softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(o)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class ClimaX(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, W = cfg["img_size"]
        p = cfg["patch_size"]
        D = cfg["embed_dim"]
        V = len(cfg["variables"])
        assert H % p == 0 and W % p == 0 and D % cfg["num_heads"] == 0
        self.tokenization = cfg["tokenization"]
        assert self.tokenization in ("aggregate", "per_variable")
        self.gh, self.gw = H // p, W // p
        self.Lp = self.gh * self.gw
        self.token_embeds = nn.ModuleList([PatchEmbed(p, D) for _ in range(V)])
        self.var_embed = nn.Parameter(torch.zeros(1, V, D))
        if self.tokenization == "aggregate":
            self.var_query = nn.Parameter(torch.zeros(1, 1, D))
            self.var_agg = nn.MultiheadAttention(D, cfg["num_heads"], batch_first=True)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.Lp, D))
        self.lead_time_embed = nn.Linear(1, D)
        self.blocks = nn.ModuleList([Block(D, cfg["num_heads"], cfg["mlp_ratio"])
                                     for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(D, eps=1e-5)
        head = []
        for _ in range(cfg["decoder_depth"]):
            head += [nn.Linear(D, D), nn.GELU()]
        out = V * p * p if self.tokenization == "aggregate" else p * p
        head.append(nn.Linear(D, out))
        self.head = nn.Sequential(*head)
        self.out_ids = [cfg["variables"].index(v) for v in cfg["out_variables"]]
        self.initialize_weights()

    def initialize_weights(self):
        D = self.cfg["embed_dim"]
        with torch.no_grad():
            self.pos_embed.copy_(torch.from_numpy(get_2d_sincos_pos_embed(D, self.gh, self.gw))
                                 .float().unsqueeze(0))
            V = len(self.cfg["variables"])
            self.var_embed.copy_(torch.from_numpy(
                get_1d_sincos_pos_embed_from_grid(D, np.arange(V))).float().unsqueeze(0))
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            if self.tokenization == "aggregate":
                # As ClimaX: var_agg.in_proj_weight keeps MultiheadAttention's own
                # xavier_uniform_ init (it is not an nn.Linear); out_proj is a Linear (above).
                nn.init.xavier_uniform_(self.var_agg.in_proj_weight)
                nn.init.zeros_(self.var_agg.in_proj_bias)
                self.var_query.zero_()

    def embed(self, x):
        """x [B,V,H,W] -> tokens [B,N,D] before pos/lead-time (aggregate) or before lead time
        (per_variable, pos already added)."""
        B, V = x.shape[:2]
        e = torch.stack([self.token_embeds[v](x[:, v:v + 1]) for v in range(V)], dim=1)  # B,V,Lp,D
        e = e + self.var_embed.unsqueeze(2)
        if self.tokenization == "aggregate":
            Lp, D = e.shape[2], e.shape[3]
            kv = e.permute(0, 2, 1, 3).reshape(B * Lp, V, D)
            q = self.var_query.expand(B * Lp, 1, D)
            a, _ = self.var_agg(q, kv, kv, need_weights=False)
            return a.reshape(B, Lp, D) + self.pos_embed
        e = e + self.pos_embed.unsqueeze(1)  # B,V,Lp,D
        return e.reshape(B, V * self.Lp, -1)  # token = v*Lp + l

    def forward_encoder(self, x, lead_times_hours):
        t = self.embed(x)
        lt = self.lead_time_embed((lead_times_hours / 100.0).unsqueeze(-1))  # B,D
        t = t + lt.unsqueeze(1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def unpatchify(self, z):
        p = self.cfg["patch_size"]
        B = z.shape[0]
        V = len(self.cfg["variables"])
        if self.tokenization == "aggregate":
            z = z.reshape(B, self.gh, self.gw, p, p, V)
            z = torch.einsum("nhwpqc->nchpwq", z)
        else:
            z = z.reshape(B, V, self.gh, self.gw, p, p)
            z = torch.einsum("nchwpq->nchpwq", z)
        return z.reshape(B, V, self.gh * p, self.gw * p)

    def forward(self, x, lead_times_hours):
        z = self.head(self.forward_encoder(x, lead_times_hours))
        return self.unpatchify(z)[:, self.out_ids]


def lat_weighted_mse(pred, y, lat_deg):
    w = torch.cos(torch.deg2rad(lat_deg))
    w = w / w.mean()
    return ((pred - y) ** 2 * w.view(1, 1, -1, 1)).mean()


# ----------------------------------------------------------------------------------------------
# Hand-written functional forward from a flat parameter dict: the form the C++ code takes.
# Used only by --check as an independent cross-check of the layout conventions above.

def functional_forward(P, cfg, x, lt_hours):
    H, W = cfg["img_size"]
    p, D, Hh = cfg["patch_size"], cfg["embed_dim"], cfg["num_heads"]
    V = len(cfg["variables"])
    d = D // Hh
    gh, gw = H // p, W // p
    Lp = gh * gw
    B = x.shape[0]

    def lin(z, name):
        return z @ P[name + ".weight"].t() + P[name + ".bias"]

    def ln(z, name):
        mu = z.mean(-1, keepdim=True)
        var = ((z - mu) ** 2).mean(-1, keepdim=True)
        return (z - mu) / torch.sqrt(var + 1e-5) * P[name + ".weight"] + P[name + ".bias"]

    def gelu(z):
        return 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))

    def mha(q, k, v):  # [B,Nq,D], [B,Nk,D] -> heads h*d..h*d+d
        Bq, Nq, _ = q.shape
        Nk = k.shape[1]
        q = q.reshape(Bq, Nq, Hh, d).transpose(1, 2)
        k = k.reshape(Bq, Nk, Hh, d).transpose(1, 2)
        v = v.reshape(Bq, Nk, Hh, d).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(d)
        s = torch.exp(s - s.max(-1, keepdim=True).values)
        s = s / s.sum(-1, keepdim=True)
        return (s @ v).transpose(1, 2).reshape(Bq, Nq, D)

    # patches [B,V,Lp,p*p], patch l = r*gw + c, element (pr, pc) -> pr*p + pc
    patches = x.reshape(B, V, gh, p, gw, p).permute(0, 1, 2, 4, 3, 5).reshape(B, V, Lp, p * p)
    e = torch.stack([patches[:, v] @ P[f"token_embeds.{v}.proj.weight"].reshape(D, p * p).t()
                     + P[f"token_embeds.{v}.proj.bias"] for v in range(V)], dim=1)
    e = e + P["var_embed"][0][:, None, :]
    if cfg["tokenization"] == "aggregate":
        Wi, bi = P["var_agg.in_proj_weight"], P["var_agg.in_proj_bias"]
        q = P["var_query"][0] @ Wi[:D].t() + bi[:D]  # [1,D]
        kv = e.permute(0, 2, 1, 3).reshape(B * Lp, V, D)
        k = kv @ Wi[D:2 * D].t() + bi[D:2 * D]
        v = kv @ Wi[2 * D:].t() + bi[2 * D:]
        a = mha(q.expand(B * Lp, 1, D), k, v).reshape(B, Lp, D)
        t = lin(a, "var_agg.out_proj") + P["pos_embed"]
    else:
        t = (e + P["pos_embed"][0][None, None]).reshape(B, V * Lp, D)
    t = t + ((lt_hours / 100.0)[:, None] * P["lead_time_embed.weight"][:, 0]
             + P["lead_time_embed.bias"])[:, None, :]
    for i in range(cfg["depth"]):
        pre = f"blocks.{i}."
        h1 = ln(t, pre + "norm1")
        qkv = lin(h1, pre + "attn.qkv")
        o = mha(qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:])
        t = t + lin(o, pre + "attn.proj")
        h2 = ln(t, pre + "norm2")
        t = t + lin(gelu(lin(h2, pre + "mlp.fc1")), pre + "mlp.fc2")
    t = ln(t, "norm")
    for k in range(cfg["decoder_depth"]):
        t = gelu(lin(t, f"head.{2 * k}"))
    z = lin(t, f"head.{2 * cfg['decoder_depth']}")
    out = torch.zeros(B, V, H, W, dtype=x.dtype)
    if cfg["tokenization"] == "aggregate":
        z = z.reshape(B, gh, gw, p, p, V)  # index (pr*p+pc)*V + v
        out = z.permute(0, 5, 1, 3, 2, 4).reshape(B, V, H, W)
    else:
        z = z.reshape(B, V, gh, gw, p, p)  # token v*Lp + r*gw + c, index pr*p+pc
        out = z.permute(0, 1, 2, 4, 3, 5).reshape(B, V, H, W)
    ids = [cfg["variables"].index(n) for n in cfg["out_variables"]]
    return out[:, ids]


# ----------------------------------------------------------------------------------------------
# Data, optimizer, schedule

def make_batch(cfg, batch, gen):
    H, W = cfg["img_size"]
    V = len(cfg["variables"])
    ids = [cfg["variables"].index(n) for n in cfg["out_variables"]]
    # Latitudes: descending, unevenly spaced, asymmetric about the equator (weights are not a
    # symmetric trivial vector, so a flipped latitude index is caught).
    base = np.linspace(80.0, -62.0, H)
    jitter = (torch.rand(H, generator=gen, dtype=torch.float64).numpy() - 0.5) * 0.4 * (142.0 / H)
    lat = np.sort(base + jitter)[::-1].copy()
    ii = torch.arange(H, dtype=torch.float64)[:, None] / H
    jj = torch.arange(W, dtype=torch.float64)[None, :] / W

    def field():
        f = torch.zeros(H, W, dtype=torch.float64)
        for _ in range(3):
            a = torch.randn(1, generator=gen, dtype=torch.float64)
            kx = float(torch.randint(1, 4, (1,), generator=gen))
            ky = float(torch.randint(1, 3, (1,), generator=gen))
            ph = float(torch.rand(1, generator=gen)) * 2 * math.pi
            f = f + a * torch.sin(2 * math.pi * (kx * jj + ky * ii) + ph)
        return f

    x = torch.zeros(batch, V, H, W, dtype=torch.float64)
    y = torch.zeros(batch, len(ids), H, W, dtype=torch.float64)
    for b in range(batch):
        for v in range(V):
            x[b, v] = field() + 0.1 * torch.randn(H, W, generator=gen, dtype=torch.float64)
        for o, v in enumerate(ids):
            y[b, o] = 0.8 * torch.roll(x[b, v], shifts=1, dims=1) + 0.3 * field() \
                + 0.1 * torch.randn(H, W, generator=gen, dtype=torch.float64) \
                + (1.5 if o % 2 == 0 else 0.8)  # per-variable offset: the gradient norm
            # is near clip_grad_norm (1.0): with the defaults, aggregate clips from step 5 on, per_variable always
    leads = [6.0, 72.0, 24.0, 120.0, 48.0, 168.0]
    lt = torch.tensor([leads[b % len(leads)] for b in range(batch)], dtype=torch.float64)
    return {"x": x.float(), "y": y.float(), "lead_times": lt.float(),
            "lat": torch.from_numpy(lat).float()}


def schedule_lr(s, hp):
    if s < hp["warmup_steps"]:
        return hp["warmup_start_lr"] + (hp["base_lr"] - hp["warmup_start_lr"]) * s / hp["warmup_steps"]
    return hp["min_lr"] + 0.5 * (hp["base_lr"] - hp["min_lr"]) * (
        1 + math.cos(math.pi * (s - hp["warmup_steps"]) / (hp["total_steps"] - hp["warmup_steps"])))


def no_decay(name):
    return "pos_embed" in name or "var_embed" in name


def run_training(model, batch, hp, steps):
    """model: float64 copy. Returns dict of per-step records."""
    decay = [p for n, p in model.named_parameters() if not no_decay(n)]
    nod = [p for n, p in model.named_parameters() if no_decay(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": nod, "weight_decay": 0.0}],
                            lr=hp["base_lr"], betas=tuple(hp["betas"]), eps=hp["eps"])
    x, y = batch["x"].double(), batch["y"].double()
    lt, lat = batch["lead_times"].double(), batch["lat"].double()
    losses, norms, lrs = [], [], []
    for s in range(steps):
        lr = schedule_lr(s, hp)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = lat_weighted_mse(model(x, lt), y, lat)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=hp["clip_grad_norm"])
        opt.step()
        losses.append(loss.item())
        norms.append(float(gn))
        lrs.append(lr)
    with torch.no_grad():
        final_loss = lat_weighted_mse(model(x, lt), y, lat).item()
    return {"losses": losses, "grad_norms_before_clip": norms, "lrs": lrs,
            "loss_after_last_step": final_loss}


# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--tokenization", choices=["aggregate", "per_variable"], default="aggregate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--img", type=int, nargs=2, default=[8, 16], metavar=("H", "W"))
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--decoder-depth", type=int, default=2)
    ap.add_argument("--num-heads", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--variables", default="t2m,z_500,u10")
    ap.add_argument("--out-variables", default="t2m,z_500")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.02,
                    help="std of the noise added to every parameter after initialisation")
    ap.add_argument("--check", action="store_true", help="run the self-checks (see module doc)")
    ap.add_argument("--climax-layout", action="store_true",
                    help="instead: a ClimaX-layout Lightning checkpoint and its forward (see "
                         "climax_layout_main)")
    ap.add_argument("--climax-variables",
                    default="land_sea_mask,orography,2m_temperature,10m_u_component_of_wind,"
                            "geopotential_500,temperature_850,u_component_of_wind_250",
                    help="--climax-layout: the default variables (ClimaX names)")
    ap.add_argument("--climax-inputs", default="geopotential_500,2m_temperature,land_sea_mask",
                    help="--climax-layout: the forward's input variables (ClimaX names)")
    ap.add_argument("--climax-outputs", default="2m_temperature,geopotential_500",
                    help="--climax-layout: the forward's output variables")
    return ap.parse_args(argv)


def config_from_args(a):
    return {"img_size": [a.img[0], a.img[1]], "patch_size": a.patch, "embed_dim": a.embed_dim,
            "depth": a.depth, "decoder_depth": a.decoder_depth, "num_heads": a.num_heads,
            "mlp_ratio": float(a.mlp_ratio), "variables": a.variables.split(","),
            "out_variables": a.out_variables.split(","), "tokenization": a.tokenization}


def hyper_params(steps):
    return {"optimizer": "torch.optim.AdamW (decoupled weight decay: p *= 1 - lr*wd before the "
                         "Adam update; bias-corrected moments; denom = sqrt(v)/sqrt(1-b2^t) + eps)",
            "base_lr": 2e-3, "warmup_start_lr": 2e-4, "warmup_steps": 3, "total_steps": 10,
            "min_lr": 1e-5, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.05,
            "no_weight_decay_params": "names containing 'pos_embed' or 'var_embed'",
            "clip_grad_norm": 1.0,
            "clip_rule": "torch.nn.utils.clip_grad_norm_: total = sqrt(sum of squares of all "
                         "grads); coef = min(1, max_norm/(total + 1e-6)); g *= coef",
            "schedule": "s < warmup_steps: warmup_start_lr + (base_lr - warmup_start_lr)*s/"
                        "warmup_steps; else min_lr + 0.5*(base_lr - min_lr)*(1 + cos(pi*(s - "
                        "warmup_steps)/(total_steps - warmup_steps))); s = 0-based update index",
            "steps": steps}


def build(cfg, seed, noise):
    torch.manual_seed(seed)
    model = ClimaX(cfg)
    gen = torch.Generator().manual_seed(seed + 1000003)
    with torch.no_grad():
        for _, prm in sorted(model.named_parameters()):
            prm.add_(noise * torch.randn(prm.shape, generator=gen))
    return model, gen


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.climax_layout:
        os.makedirs(a.out, exist_ok=True)
        return climax_layout_main(a)
    cfg = config_from_args(a)
    os.makedirs(a.out, exist_ok=True)
    model, gen = build(cfg, a.seed, a.noise)
    batch = make_batch(cfg, a.batch, gen)

    params32 = {n: p.detach().clone().float() for n, p in model.state_dict().items()}
    write_safetensors(os.path.join(a.out, "model.safetensors"), params32,
                      {"seqvit.config": json.dumps(cfg)})
    write_safetensors(os.path.join(a.out, "batch.safetensors"), batch,
                      {"seqvit.batch": json.dumps({"variables": cfg["variables"],
                                                   "out_variables": cfg["out_variables"],
                                                   "lead_times_unit": "hours",
                                                   "lat_unit": "degrees"})})

    # Reference forward/backward in float64 from the float32 parameters.
    m64 = ClimaX(cfg)
    m64.load_state_dict(params32)
    m64.double()
    x, y = batch["x"].double(), batch["y"].double()
    lt, lat = batch["lead_times"].double(), batch["lat"].double()
    pred = m64(x, lt)
    loss = lat_weighted_mse(pred, y, lat)
    m64.zero_grad()
    loss.backward()
    ref = {"pred": pred.detach().float(), "loss": loss.detach().reshape(1).float()}
    for n, p in m64.named_parameters():
        ref["grad." + n] = p.grad.detach().float()
    write_safetensors(os.path.join(a.out, "reference.safetensors"), ref,
                      {"seqvit.reference": "float64 forward/backward of model.safetensors on "
                                           "batch.safetensors, stored as float32"})

    # The same forward/backward with dropout and drop-path (seqvit's masks at step 3).
    drop = {"rate": 0.1, "path": 0.2, "seed": 7, "step": 3}
    dloss = write_dropout_reference(a.out, cfg, params32, batch, drop)
    print(f"dropout {drop}: loss {dloss:.10g}; wrote {a.out}/dropout_reference.safetensors")

    # Training reference.
    hp = hyper_params(a.steps)
    mt = ClimaX(cfg)
    mt.load_state_dict(params32)
    mt.double()
    tr = run_training(mt, batch, hp, a.steps)
    write_safetensors(os.path.join(a.out, "train_final.safetensors"),
                      {n: p.detach().float() for n, p in mt.state_dict().items()},
                      {"seqvit.config": json.dumps(cfg)})
    doc = {"hyper_parameters": hp, "config": cfg, "seed": a.seed, "precision": "float64",
           "batch": "batch.safetensors, the same batch every step",
           "loss": "latitude-weighted MSE, mean over (B, Vo, H, W)",
           "losses_meaning": "losses[s] = loss of the forward pass at step s, before update s",
           "lr_meaning": "lrs[s] = learning rate used for update s",
           "final_parameters": "train_final.safetensors (after all steps)",
           **tr}
    with open(os.path.join(a.out, "train_reference.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{cfg['tokenization']}: N={model.Lp if cfg['tokenization'] == 'aggregate' else model.Lp * len(cfg['variables'])} "
          f"params={sum(p.numel() for p in model.parameters())} loss={loss.item():.10g} "
          f"pred={tuple(pred.shape)} losses[0..]={[round(v, 6) for v in tr['losses']]}")
    print(f"wrote {a.out}/{{model,batch,reference,train_final}}.safetensors, train_reference.json")

    if a.check:
        ok = run_checks(a, cfg, params32, batch, ref, m64)
        print("CHECK", "PASSED" if ok else "FAILED")
        return 0 if ok else 1
    return 0


def run_checks(a, cfg, params32, batch, ref, m64):
    ok = True

    def report(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        print(f"  [{'ok' if good else 'FAIL'}] {name}: {err:.3e} (tol {tol:.0e})")

    print("checks:")
    # 1. files parse back and match
    for fn, want in (("model.safetensors", params32), ("batch.safetensors", batch),
                     ("reference.safetensors", ref)):
        got, meta = read_safetensors(os.path.join(a.out, fn))
        same = set(got) == set(want)
        err = 0.0 if same else float("inf")
        for n in want:
            if n in got:
                w = want[n].numpy()
                if got[n].shape != w.shape or got[n].dtype != np.float32:
                    err = float("inf")
                else:
                    err = max(err, float(np.abs(got[n] - w).max()) if w.size else 0.0)
        report(f"{fn} round trip ({len(got)} tensors)", err, 0.0)
        if fn == "model.safetensors":
            c = json.loads(meta["seqvit.config"])
            report("model config metadata", 0.0 if c == cfg else 1.0, 0.0)
    # 2. shapes
    B, V = batch["x"].shape[:2]
    H, W = cfg["img_size"]
    report("pred shape [B,Vo,H,W]", 0.0 if tuple(ref["pred"].shape) ==
           (B, len(cfg["out_variables"]), H, W) else 1.0, 0.0)
    names = set(params32)
    if cfg["tokenization"] == "aggregate":
        exp_extra = {"var_query", "var_agg.in_proj_weight", "var_agg.in_proj_bias",
                     "var_agg.out_proj.weight", "var_agg.out_proj.bias"}
        report("aggregate has var_query/var_agg", 0.0 if exp_extra <= names else 1.0, 0.0)
        last = params32[f"head.{2 * cfg['decoder_depth']}.weight"].shape[0]
        report("aggregate head out = V*p*p", 0.0 if last == V * cfg["patch_size"] ** 2 else 1.0, 0.0)
    else:
        report("per_variable has no var_query/var_agg",
               0.0 if not any(n.startswith("var_agg") or n == "var_query" for n in names) else 1.0, 0.0)
        last = params32[f"head.{2 * cfg['decoder_depth']}.weight"].shape[0]
        report("per_variable head out = p*p", 0.0 if last == cfg["patch_size"] ** 2 else 1.0, 0.0)
    # 3. functional forward (plain tensor ops) vs the module, float64
    P = {n: p.double() for n, p in params32.items()}
    x, y = batch["x"].double(), batch["y"].double()
    lt, lat = batch["lead_times"].double(), batch["lat"].double()
    with torch.no_grad():
        pf = functional_forward(P, cfg, x, lt)
        pm = m64(x, lt)
    report("functional vs module pred (max abs, f64)", float((pf - pm).abs().max()), 1e-12)
    # explicit loss formula
    w = np.cos(np.deg2rad(batch["lat"].double().numpy()))
    w = w / w.mean()
    l_np = float(np.mean((pm.numpy() - y.numpy()) ** 2 * w[None, None, :, None]))
    report("loss formula (numpy) vs reference", abs(l_np - float(ref["loss"][0])) / abs(l_np), 1e-6)
    # 4. finite differences, float64, central, on entries of several parameters
    Pfd = {n: p.clone() for n, p in P.items()}

    def loss_of(Pd):
        return float(lat_weighted_mse(functional_forward(Pd, cfg, x, lt), y, lat))

    gen = torch.Generator().manual_seed(a.seed + 7)
    targets = ["token_embeds.1.proj.weight", "var_embed", "pos_embed", "lead_time_embed.weight",
               "lead_time_embed.bias", "blocks.0.attn.qkv.weight", "blocks.0.norm1.weight",
               f"blocks.{cfg['depth'] - 1}.mlp.fc1.bias", "norm.bias",
               f"head.{2 * cfg['decoder_depth']}.weight"]
    if cfg["tokenization"] == "aggregate":
        targets += ["var_query", "var_agg.in_proj_weight", "var_agg.out_proj.bias"]
    grads = {n: p.grad for n, p in m64.named_parameters()}
    worst = 0.0
    for n in targets:
        flat = Pfd[n].view(-1)
        for _ in range(3):
            i = int(torch.randint(0, flat.numel(), (1,), generator=gen))
            h = 1e-5
            old = float(flat[i])
            flat[i] = old + h
            lp = loss_of(Pfd)
            flat[i] = old - h
            lm = loss_of(Pfd)
            flat[i] = old
            fd = (lp - lm) / (2 * h)
            g = float(grads[n].view(-1)[i])
            # relative error, with a floor so entries whose gradient is ~0 compare absolutely
            rel = abs(fd - g) / max(abs(g), abs(fd), 1e-4)
            worst = max(worst, rel)
            if rel > 1e-5:
                print(f"    {n}[{i}]: autograd {g:.10e} fd {fd:.10e} rel {rel:.2e}")
    report(f"autograd vs finite differences ({len(targets)} params x 3 entries, max |fd-g|/max(|g|,|fd|,1e-4))", worst, 1e-5)
    # 5. every gradient non-trivial
    zero = [n for n, g in grads.items() if float(g.abs().max()) == 0.0]
    report("no all-zero gradient" + (f" ({zero})" if zero else ""), float(len(zero)), 0.0)
    # 6. train reference sanity: losses decrease over the run and first loss == reference loss
    with open(os.path.join(a.out, "train_reference.json")) as f:
        tr = json.load(f)
    report("train losses[0] == reference loss", abs(tr["losses"][0] - float(ref["loss"][0]))
           / abs(tr["losses"][0]), 1e-6)
    report("train loss decreases (last < first)",
           0.0 if tr["loss_after_last_step"] < tr["losses"][0] else 1.0, 0.0)
    clipped = sum(1 for g in tr["grad_norms_before_clip"] if g > tr["hyper_parameters"]["clip_grad_norm"])
    print(f"  [info] steps whose gradient norm exceeds clip_grad_norm (clipped): {clipped} of "
          f"{len(tr['grad_norms_before_clip'])}")
    return ok


# ----------------------------------------------------------------------------------------------
# Dropout and drop-path with seqvit's hashed masks (docs/model.md "Dropout", backend/device.h
# DropoutArgs), at ClimaX's places (timm Block / Mlp / Attention, ClimaX's pos_drop): the mask of
# each element is drawn from (seed, step, site, the element's index), so this forward and
# seqvit's drop the same elements, and their gradients must agree.

_U64 = 0xFFFFFFFFFFFFFFFF


def _mix_int(z):
    z = (z + 0x9e3779b97f4a7c15) & _U64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _U64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & _U64
    return z ^ (z >> 31)


def _mix_np(z):
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9e3779b97f4a7c15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def dropout_mask(p, seed, step, site, B, N, C, per_sample=False):
    """[B, N, C] float64 multipliers (0 or 1/(1-p)) of seqvit's mask with probability p (as
    float32, as the backend receives it); per_sample: one draw per sample (drop-path)."""
    p32 = float(np.float32(p))
    if p32 <= 0:
        return torch.ones(B, N, C, dtype=torch.float64)
    key = _mix_int(_mix_int(_mix_int(seed) ^ step) ^ site)
    thr = np.uint64(int(p32 * 16777216.0))
    if per_sample:
        ids = np.arange(B, dtype=np.uint64)[:, None, None] * np.ones((1, N, C), dtype=np.uint64)
    else:
        ids = np.arange(B * N * C, dtype=np.uint64).reshape(B, N, C)
    keep = (_mix_np(np.uint64(key) ^ ids) >> np.uint64(40)) >= thr
    return torch.from_numpy(keep.astype(np.float64) / (1.0 - p32))


def forward_with_dropout(model, x, lt_hours, rate, path, seed, step):
    """ClimaX.forward with dropout (pos_drop; per block proj_drop, the Mlp's two drops) and
    drop-path (each residual branch, rate path * i / (depth - 1)) at their ClimaX places."""
    t = model.embed(x)
    t = t + model.lead_time_embed((lt_hours / 100.0).unsqueeze(-1)).unsqueeze(1)
    B, N, D = t.shape
    t = t * dropout_mask(rate, seed, step, 0, B, N, D)
    depth = len(model.blocks)
    for i, blk in enumerate(model.blocks):
        dp = path * i / (depth - 1) if depth > 1 else 0.0
        a = blk.attn(blk.norm1(t))
        t = t + a * dropout_mask(rate, seed, step, 8 * i + 1, B, N, D) \
            * dropout_mask(dp, seed, step, 8 * i + 2, B, N, D, per_sample=True)
        h = blk.mlp.act(blk.mlp.fc1(blk.norm2(t)))
        h = h * dropout_mask(rate, seed, step, 8 * i + 3, B, N, h.shape[-1])
        m = blk.mlp.fc2(h)
        t = t + m * dropout_mask(rate, seed, step, 8 * i + 4, B, N, D) \
            * dropout_mask(dp, seed, step, 8 * i + 5, B, N, D, per_sample=True)
    z = model.head(model.norm(t))
    return model.unpatchify(z)[:, model.out_ids]


def write_dropout_reference(out, cfg, params32, batch, drop):
    m = ClimaX(cfg)
    m.load_state_dict(params32)
    m.double()
    x, y = batch["x"].double(), batch["y"].double()
    lt, lat = batch["lead_times"].double(), batch["lat"].double()
    pred = forward_with_dropout(m, x, lt, drop["rate"], drop["path"], drop["seed"], drop["step"])
    loss = lat_weighted_mse(pred, y, lat)
    loss.backward()
    ref = {"pred": pred.detach().float(), "loss": loss.detach().reshape(1).float()}
    for n, p in m.named_parameters():
        ref["grad." + n] = p.grad.detach().float()
    write_safetensors(os.path.join(out, "dropout_reference.safetensors"), ref,
                      {"seqvit.dropout": json.dumps(drop)})
    return loss.item()


# ----------------------------------------------------------------------------------------------
# ClimaX's own layout (--climax-layout): the module of microsoft/ClimaX src/climax/arch.py, with a
# list of default variables (ClimaX names), one token embedding and one var_embed row per default
# variable and a head over all of them; a forward takes the input variables by name, uses their
# embeddings (get_var_ids) and keeps the output variables of the unpatchified head. Its checkpoint
# is a PyTorch Lightning one: {"state_dict": {"net.<name>": tensor}}. scripts/climax_checkpoint.py
# converts it into a seqvit model for a variable subset, whose forward must match this one.

class ClimaXArch(nn.Module):
    def __init__(self, default_vars, img_size, patch_size, embed_dim, depth, decoder_depth,
                 num_heads, mlp_ratio):
        super().__init__()
        self.default_vars = list(default_vars)
        self.var_map = {v: i for i, v in enumerate(self.default_vars)}
        self.img_size, self.patch_size = list(img_size), patch_size
        H, W = img_size
        p, D, Vd = patch_size, embed_dim, len(self.default_vars)
        self.gh, self.gw = H // p, W // p
        self.token_embeds = nn.ModuleList([PatchEmbed(p, D) for _ in range(Vd)])
        self.var_embed = nn.Parameter(torch.zeros(1, Vd, D))
        self.var_query = nn.Parameter(torch.zeros(1, 1, D))
        self.var_agg = nn.MultiheadAttention(D, num_heads, batch_first=True)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.gh * self.gw, D))
        self.lead_time_embed = nn.Linear(1, D)
        self.blocks = nn.ModuleList([Block(D, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(D, eps=1e-5)
        head = []
        for _ in range(decoder_depth):
            head += [nn.Linear(D, D), nn.GELU()]
        head.append(nn.Linear(D, Vd * p * p))
        self.head = nn.Sequential(*head)

    def forward(self, x, lead_times_hours, variables, out_variables):
        """x [B, len(variables), H, W] -> preds [B, len(out_variables), H, W] (eval: no dropout)."""
        ids = [self.var_map[v] for v in variables]
        e = torch.stack([self.token_embeds[i](x[:, k:k + 1]) for k, i in enumerate(ids)], dim=1)
        e = e + self.var_embed[:, ids, :].unsqueeze(2)  # B, V, L, D
        B, V, L, D = e.shape
        kv = torch.einsum("bvld->blvd", e).flatten(0, 1)  # B*L, V, D
        q = self.var_query.repeat_interleave(kv.shape[0], dim=0)
        t, _ = self.var_agg(q, kv, kv, need_weights=False)
        t = t.reshape(B, L, D) + self.pos_embed
        t = t + self.lead_time_embed((lead_times_hours / 100.0).unsqueeze(-1)).unsqueeze(1)
        for blk in self.blocks:
            t = blk(t)
        z = self.head(self.norm(t))  # B, L, Vd*p*p
        p, c = self.patch_size, len(self.default_vars)
        z = torch.einsum("nhwpqc->nchpwq", z.reshape(B, self.gh, self.gw, p, p, c))
        imgs = z.reshape(B, c, self.gh * p, self.gw * p)
        return imgs[:, [self.var_map[v] for v in out_variables]]


def climax_layout_main(a):
    """Writes DIR/climax.ckpt (random weights; DIR/climax_parallel.ckpt the same with the stacked
    patch embeddings of parallel_patch_embed=True), DIR/climax_batch.safetensors for
    --climax-inputs and DIR/climax_reference.safetensors (pred and loss in float64 from the
    float32 weights)."""
    default_vars = a.climax_variables.split(",")
    inputs, outputs = a.climax_inputs.split(","), a.climax_outputs.split(",")
    torch.manual_seed(a.seed)
    net = ClimaXArch(default_vars, a.img, a.patch, a.embed_dim, a.depth, a.decoder_depth,
                     a.num_heads, a.mlp_ratio)
    gen = torch.Generator().manual_seed(a.seed + 17)
    with torch.no_grad():  # random weights everywhere (no zero var_query / biases)
        for _, prm in sorted(net.named_parameters()):
            prm.copy_(0.05 * torch.randn(prm.shape, generator=gen))
        for n, prm in net.named_parameters():
            if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "norm.weight":
                prm.add_(1.0)
    sd = {"net." + n: t.detach().clone().float() for n, t in net.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 0, "global_step": 0}, os.path.join(a.out, "climax.ckpt"))
    # the same weights as ClimaX's ParallelVarPatchEmbed stores them (parallel_patch_embed=True)
    par = {n: t for n, t in sd.items() if not n.startswith("net.token_embeds.")}
    Vd = len(default_vars)
    par["net.token_embeds.proj_weights"] = torch.stack(
        [sd[f"net.token_embeds.{i}.proj.weight"] for i in range(Vd)])
    par["net.token_embeds.proj_biases"] = torch.stack(
        [sd[f"net.token_embeds.{i}.proj.bias"] for i in range(Vd)])
    torch.save({"state_dict": par}, os.path.join(a.out, "climax_parallel.ckpt"))
    cfg = {"img_size": list(a.img), "variables": inputs, "out_variables": outputs}
    batch = make_batch(cfg, a.batch, gen)
    write_safetensors(os.path.join(a.out, "climax_batch.safetensors"), batch,
                      {"climax.batch": json.dumps({"variables": inputs, "out_variables": outputs})})
    m64 = ClimaXArch(default_vars, a.img, a.patch, a.embed_dim, a.depth, a.decoder_depth,
                     a.num_heads, a.mlp_ratio)
    m64.load_state_dict({n[4:]: t for n, t in sd.items()})
    m64.double().eval()
    with torch.no_grad():
        pred = m64(batch["x"].double(), batch["lead_times"].double(), inputs, outputs)
        loss = lat_weighted_mse(pred, batch["y"].double(), batch["lat"].double())
    write_safetensors(os.path.join(a.out, "climax_reference.safetensors"),
                      {"pred": pred.float(), "loss": loss.reshape(1).float()},
                      {"climax.reference": "float64 ClimaX-layout forward of climax.ckpt on "
                                           "climax_batch.safetensors, stored as float32"})
    print(f"ClimaX layout: {len(default_vars)} default variables, inputs {inputs} -> {outputs}, "
          f"loss {loss.item():.10g}; wrote {a.out}/climax.ckpt, climax_batch.safetensors, "
          f"climax_reference.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
