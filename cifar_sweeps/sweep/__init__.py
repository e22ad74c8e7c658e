"""The sweeper's parts (see cifar_sweeps.sweeper for the map): storage, scheduler, outcomes, progress."""
