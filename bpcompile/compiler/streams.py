"""Seed streams: every random draw of a rule or the runtime comes from its own generator, seeded from
train.seed and a stream number keyed by (owner, purpose), so no draw shifts another (BP and FA runs share W;
adding a rule's draw never changes an existing rule's numbers).

    generator = seeded_generator(spec.train.seed, "my_rule", "feedback_init")

The built-in keys keep the numbers they had before this registry existed, so shipped specs give the same
runs; any other key gets a number derived from its text (a stable hash at or above 2**32, far from the
built-in ones). Share a key on purpose only: FA, DFA, weight mirror and Kolen-Pollack draw B from one
stream, so the same seed gives them the same B."""

import hashlib

import torch

BUILT_IN_STREAMS = {
    ("feedback", "init"): 1,                       # B of FA, DFA, weight mirror, Kolen-Pollack
    ("sign_symmetry", "magnitudes"): 2,            # frSF's fixed M (and brSF's first draw)
    ("weight_mirror", "noise"): 3,                 # the mirror phases' noise inputs
    ("target_propagation", "inverse_init"): 5,     # V_l of every TP variant
    ("ao_sdtp", "aux_init"): 6,                    # W_aux
    ("runtime", "noise_inputs"): 7,                # a program's 'noise' inputs (TP's inverse-loss noise)
    ("sign_symmetry", "redraw"): 17,               # brSF's M before every batch
}
SEED_MULTIPLIER = 1_000_003


def stream_number(owner: str, purpose: str) -> int:
    """The stream of (owner, purpose): its built-in number, else a stable 64-bit hash of the key."""
    key = (owner, purpose)
    if key in BUILT_IN_STREAMS:
        return BUILT_IN_STREAMS[key]
    digest = hashlib.blake2b(f"{owner}/{purpose}".encode(), digest_size=8).digest()
    return 2**32 + int.from_bytes(digest, "little") % (2**62)


def seed_of(seed: int, owner: str, purpose: str) -> int:
    return (seed * SEED_MULTIPLIER + stream_number(owner, purpose)) % 2**63


def seeded_generator(seed: int, owner: str, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` for the draws of (owner, purpose) in a run of train.seed `seed`."""
    return torch.Generator(device=device).manual_seed(seed_of(seed, owner, purpose))
