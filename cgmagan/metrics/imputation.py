"""ROAD's noisy linear imputation (Rong et al. 2022) as the ``grad-cam`` package computes it, with
its equation system assembled at once instead of entry by entry.

The package's ``NoisyLinearImputer`` builds its sparse system by fancy-index assignment into a
``lil_matrix``, ~3 ms of Python per call; ROAD calls it once per image, percentile, order and
method (2,800 times in `make run`). Here the same entries go into a COO matrix in one call: the
system, its solution and the noise drawn after it are the package's, to the bit
(tests/test_metrics.py compares them), and the solver and the neighbour weights are its own.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve


def sparse_system(mask: np.ndarray, img: np.ndarray, weights=neighbors_weights):
    """The package's ``setup_sparse_system``: mask [H, W] (0: impute), img [C, H, W] -> the system
    matrix [N, N] (CSC) over the N pixels to impute, and its right-hand side [N, C]."""
    maskflt, imgflat = mask.flatten(), img.reshape((img.shape[0], -1))
    indices = np.argwhere(maskflt == 0).flatten()
    variable = np.zeros(len(maskflt), dtype=int)
    variable[indices] = np.arange(len(indices))
    n = len(indices)
    b = np.zeros((n, img.shape[0]))
    sum_neighbors = np.ones(n)
    rows, cols, values = [np.arange(n)], [np.arange(n)], []
    for offset, weight in weights:
        valid, coords = NoisyLinearImputer.add_offset_to_indices(indices, offset, mask.shape)
        valid_coords, valid_ids = coords[valid], np.argwhere(valid == 1).flatten()
        known = maskflt[valid_coords] > 0.5
        b[valid_ids[known], :] -= weight * imgflat[:, valid_coords[known]].T  # a known neighbour: to the right-hand side
        unknown = maskflt[valid_coords] < 0.5
        rows.append(valid_ids[unknown])  # an imputed neighbour: a variable of the system
        cols.append(variable[valid_coords[unknown]])
        values.append(np.full(int(unknown.sum()), weight))
        sum_neighbors[~valid] -= weight  # outside the image: its weight goes
    values.insert(0, -sum_neighbors)
    matrix = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    matrix.sum_duplicates()  # canonical: sorted indices, as the package's LIL -> CSC conversion gives
    return matrix, b


class NoisyLinearImputation(NoisyLinearImputer):
    """``NoisyLinearImputer`` with :func:`sparse_system`: called as the package's, (img [C, H, W],
    mask [H, W]) -> the image with the masked pixels imputed plus its noise (torch's generator)."""

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        flat = img.reshape(img.shape[0], -1)
        missing = np.argwhere(mask.reshape(-1) == 0).flatten()
        matrix, b = sparse_system(mask.numpy(), img.numpy())
        solution = torch.tensor(spsolve(matrix, b), dtype=torch.float, device="cpu")  # on the host, as the image it fills
        filled = flat.clone()
        filled[:, missing] = solution.t() + self.noise * torch.randn_like(solution.t())
        return filled.reshape_as(img)
