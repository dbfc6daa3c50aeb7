"""Law forms: named parameters with bounds, start grids and batched predictions with analytic Jacobians.

:mod:`~scaling_laws.laws.base` holds the base class and the general-pretraining laws (Chinchilla, Muennighoff),
:mod:`~scaling_laws.laws.spt` every specialized-pretraining form, :mod:`~scaling_laws.laws.registry` their names.
"""
