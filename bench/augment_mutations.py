"""Mutation check of tests/test_data_augment.py: apply each mutation, run the named tests, restore; print which test caught it.

python bench/augment_mutations.py [INDEX ...]   (from the repository root; ~7 min on the shared 2-core box)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutations import run_mutations

MUTATIONS = [
    (
        "no preprocessing inversion: sample the standardised values with zero padding",
        "src/mnistlab/data/augment.py",
        "        pixels = x * self.std + self.mean  # back to pixel units: background 0, ink up to 255\n",
        "        pixels = x\n        self.mean, self.std = torch.tensor(0.0), torch.tensor(1.0)\n",
        "test_padding_is_background",
    ),
    (
        "padding_mode border instead of zeros",
        "src/mnistlab/data/augment.py",
        'padding_mode="zeros"',
        'padding_mode="border"',
        "test_padding_is_background",
    ),
    (
        "rotation inverse not transposed (turns the other way)",
        "src/mnistlab/data/augment.py",
        "torch.stack([sin * inv_zoom, cos * inv_zoom], -1)",
        "torch.stack([-sin * inv_zoom, cos * inv_zoom], -1)",
        "test_rotating_90 or test_each_affine or test_a_rotated_blob",
    ),
    (
        "shear sign flipped",
        "src/mnistlab/data/augment.py",
        "(cos - h * sin) * inv_zoom, (-sin - h * cos) * inv_zoom",
        "(cos + h * sin) * inv_zoom, (-sin + h * cos) * inv_zoom",
        "test_each_affine",
    ),
    (
        "zoom applied the wrong way (multiplies instead of divides)",
        "src/mnistlab/data/augment.py",
        "inv_zoom = 1.0 / zoom",
        "inv_zoom = zoom",
        "test_each_affine",
    ),
    (
        "shift in the wrong direction",
        "src/mnistlab/data/augment.py",
        "-dx * (a00 * sx + a01 * sy)], -1)",
        "dx * (a00 * sx + a01 * sy)], -1)",
        "test_each_affine or test_padding",
    ),
    (
        "eigenbasis without the eigenvalues (unsmoothed scale)",
        "src/mnistlab/data/augment.py",
        "return (vectors[:, :keep] * values[:keep]).float()",
        "return vectors[:, :keep].float()",
        "test_elastic_field_has_simards_covariance",
    ),
    (
        "too few eigen-components (tolerance 0.1)",
        "src/mnistlab/data/augment.py",
        "EIGEN_TOLERANCE = 1e-3",
        "EIGEN_TOLERANCE = 1e-1",
        "test_elastic_field_has_simards_covariance",
    ),
    (
        "gaussian kernel truncated at 2 sigma",
        "src/mnistlab/data/augment.py",
        "GAUSSIAN_TRUNCATE = 4.0",
        "GAUSSIAN_TRUNCATE = 2.0",
        "test_simard_field_is_scipys",
    ),
    (
        "x and y share one elastic field",
        "src/mnistlab/data/augment.py",
        'coefficients = self._uniform(batch, 2, rows.shape[1], cols_t.shape[0]) * c["scale"]',
        'coefficients = self._uniform(batch, 1, rows.shape[1], cols_t.shape[0]).expand(-1, 2, -1, -1) * c["scale"]',
        "test_elastic_field_has_simards_covariance",
    ),
    (
        "draws from the global RNG instead of the distorter's generator",
        "src/mnistlab/data/augment.py",
        "torch.rand(*shape, generator=self.generator, device=self.device)",
        "torch.rand(*shape, device=self.device)",
        "test_same_seed or test_restored_state or test_an_interrupted",
    ),
    (
        "resume does not restore the distortion generator",
        "src/mnistlab/training/checkpoint.py",
        '        generator.set_state(tensors.get(f"rng.{name}.rank{rank}", tensors[f"rng.{name}"]))\n',
        '        if name != "augment":\n'
        '            generator.set_state(tensors.get(f"rng.{name}.rank{rank}", tensors[f"rng.{name}"]))\n',
        "test_an_interrupted_distorted_run",
    ),
    (
        "the generator is not registered with the Trainer (not saved, not restored)",
        "src/mnistlab/training/trainer.py",
        '        generators["augment"] = distorter.generator\n',
        "        pass\n",
        "test_an_interrupted_distorted_run",
    ),
    (
        "distortions never applied in training",
        "src/mnistlab/training/trainer.py",
        "return self.distorter.wrap(batches) if self.distorter is not None else batches",
        "return batches",
        "test_only_training_batches",
    ),
    (
        "validation also distorted",
        "src/mnistlab/training/trainer.py",
        "        images, labels = self.val.images, self.val.labels\n",
        "        images, labels = self.val.images, self.val.labels\n"
        "        images = self.distorter(images) if self.distorter is not None else images\n",
        "test_only_training_batches",
    ),
    (
        "normalised off-diagonal factor inverted (wrong for H != W)",
        "src/mnistlab/data/augment.py",
        "torch.stack([a00, a01 * (dx / dy),",
        "torch.stack([a00, a01 * (dy / dx),",
        "test_rotation_and_shear_of_a_non_square",
    ),
    (
        "shift normalised with the other axis' factor",
        "src/mnistlab/data/augment.py",
        "-dx * (a00 * sx + a01 * sy)",
        "-dy * (a00 * sx + a01 * sy)",
        "test_a_shift_moves_a_non_square",
    ),
    (
        "clean_epochs ignored: every epoch distorted",
        "src/mnistlab/training/trainer.py",
        "clean = epoch > self.config.epochs - self.config.augment.clean_epochs",
        "clean = False",
        "test_the_last_clean_epochs",
    ),
    (
        "magnitude validation dropped",
        "src/mnistlab/config.py",
        "            *self.augment.problems(),\n",
        "",
        "test_bad_magnitudes",
    ),
]
# each entry names its tests by a -k expression within tests/test_data_augment.py
run_mutations([(*m[:4], ["tests/test_data_augment.py", "-k", m[4]]) for m in MUTATIONS], sys.argv[1:])
