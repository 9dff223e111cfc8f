"""Gender, age and emotions for the faces a request asked them of: each model batched across requests.

Nothing here runs unless asked: a request without attributes cuts no chips and calls no attribute model.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor

import numpy as np

from findface_grpc.errors import FailedPrecondition
from findface_grpc.extractor.batching import ModelBatcher
from findface_grpc.extractor.models.attributes import AGE_CHIP, GENDER_CHIP, Attributes, AttributeNets, interpret
from findface_grpc.extractor.pipeline import PreparedFace

# Which chip each attribute's model takes; emotions take the aligned crop.
CHIP_SIZES = {"gender": GENDER_CHIP, "age": AGE_CHIP}


class AttributeEstimator:
    def __init__(self, nets: AttributeNets, executor: Executor, max_batch: int) -> None:
        self.nets = nets
        # Raises when the license lacks a feature (license.client.LeaseKeeper.require_feature); None: no license.
        self.require_feature: Callable[[str], None] | None = None
        self.batchers = {
            name: ModelBatcher(getattr(nets, name), np.zeros((0, 0), np.float32), executor, max_batch, name=name)
            for name in sorted(nets.available)
        }

    @property
    def available(self) -> frozenset[str]:
        return self.nets.available

    def start(self) -> None:
        for batcher in self.batchers.values():
            batcher.start()

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))

    def check(self, wanted: Collection[str]) -> None:
        """Refuse, before any work, attributes whose model this extractor does not run or the license lacks
        (each attribute is the feature of its name)."""
        missing = sorted(set(wanted) - self.available)
        if missing:
            raise FailedPrecondition(
                f"no {' or '.join(missing)} model is installed on this extractor: fetch it with "
                "`findface-fetch-models attributes` and list it in [extractor] attributes",
                details={"attributes": missing},
            )
        if self.require_feature is not None:
            for name in sorted(wanted):
                self.require_feature(name)

    @staticmethod
    def chip_sizes(wanted: Collection[str]) -> tuple[int, ...]:
        return tuple(sorted({CHIP_SIZES[name] for name in wanted if name in CHIP_SIZES}))

    async def estimate(self, faces: Sequence[PreparedFace], wanted: Collection[str]) -> list[Attributes | None]:
        """Each face's Attributes (None for every face when nothing is wanted). The faces' chips must have been
        cut with `chip_sizes(wanted)`."""
        if not wanted or not faces:
            return [None] * len(faces)
        inputs = {
            name: np.stack([f.chips[CHIP_SIZES[name]] if name in CHIP_SIZES else f.crop for f in faces])
            for name in sorted(wanted)
        }
        outputs = dict(zip(inputs, await asyncio.gather(*(self.batchers[n].run(x) for n, x in inputs.items()))))
        return [interpret(**{name: out[i] for name, out in outputs.items()}) for i in range(len(faces))]
