"""Law forms by name, as used on the command line and in fit JSON."""

from __future__ import annotations

from collections.abc import Mapping

from scaling_laws.laws.base import Chinchilla, Law, Muennighoff
from scaling_laws.laws.epochs import SPTEpochs
from scaling_laws.laws.spt import (
    FinetuneGain, SPTGap, SPTGapRegularized, SPTOverfit, SPTOverfitN, SPTRegularized, SPTTrain, SPTTrainRegularized,
)
from spt.errors import InputError

LAWS: dict[str, type[Law]] = {
    law.name: law for law in (Chinchilla, Muennighoff, SPTOverfit, SPTRegularized, SPTOverfitN, SPTTrain, SPTGap,
                              SPTTrainRegularized, SPTGapRegularized, SPTEpochs, FinetuneGain)
}


def get_law(name: str | Law, constants: Mapping[str, float] | None = None) -> Law:
    """The law form called ``name`` (a law instance is returned as is), with the fixed numbers a fit recorded
    (``constants``: e.g. the domain set's size of ``spt-epochs``; None: the form's defaults).

    Raises:
        InputError: For an unknown name.
    """
    if isinstance(name, Law):
        return name
    if name not in LAWS:
        raise InputError(f"unknown law {name!r}: expected one of {', '.join(LAWS)}")
    law = LAWS[name]
    return law() if constants is None else law.from_constants(constants)
