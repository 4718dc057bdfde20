"""vaodrill on Prefect: the flows and tasks that adapt the engine, under one name that cannot collide.

``flows`` and ``tasks`` stay at the repository's top level (the project's layout); here they are links to those
folders, so a checkout and an installed wheel import them by the same names (``vaodrill_prefect.flows.drill``) and
an installed vaodrill adds no package named ``flows`` or ``tasks`` to site-packages.
"""
