"""The bottom layer: per-atom state and gradient, the energy-term base, the model and reflection
containers, selections, ADP conventions, errors and the L-BFGS minimizer. Imports nothing from
the rest of kickref."""
