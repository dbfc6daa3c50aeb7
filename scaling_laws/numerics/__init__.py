"""Law-agnostic numerics: batched L-BFGS and Levenberg-Marquardt with box bounds, and the fit objectives."""
