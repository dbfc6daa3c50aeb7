"""Law forms by name, as used on the command line and in fit JSON."""

from __future__ import annotations

from scaling_laws.laws.base import Chinchilla, Law, Muennighoff
from scaling_laws.laws.spt import (
    FinetuneGain, SPTGap, SPTGapRegularized, SPTOverfit, SPTOverfitN, SPTRegularized, SPTTrain, SPTTrainRegularized,
)
from spt.errors import InputError

LAWS: dict[str, type[Law]] = {
    law.name: law for law in (Chinchilla, Muennighoff, SPTOverfit, SPTRegularized, SPTOverfitN, SPTTrain, SPTGap,
                              SPTTrainRegularized, SPTGapRegularized, FinetuneGain)
}


def get_law(name: str | Law) -> Law:
    """The law form called ``name`` (a law instance is returned as is).

    Raises:
        InputError: For an unknown name.
    """
    if isinstance(name, Law):
        return name
    if name not in LAWS:
        raise InputError(f"unknown law {name!r}: expected one of {', '.join(LAWS)}")
    return LAWS[name]()
