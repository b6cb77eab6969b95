"""Extract or Tune recommender: turns the study's evidence into advice for a described task."""
