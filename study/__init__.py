"""Extract or Tune study engine: measures feature extraction vs fine-tuning on real data."""
