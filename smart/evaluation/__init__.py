"""Evaluation: the paper's datasets (tasks), scores under both protocols (metrics, protocols, stats), the paper's
published tables beside ours (paper), the run report and trajectory viewer (report, viewer) and the contamination
check (contamination). Imports point one way: tasks <- protocols <- metrics, paper."""
