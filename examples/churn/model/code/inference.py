"""SageMaker inference handler for the example churn model (a logistic regression stored as JSON)."""

import json
import math
from pathlib import Path


def model_fn(model_dir):
    """Load the model from the directory SageMaker unpacks model.tar.gz into."""
    return json.loads((Path(model_dir) / "model.json").read_text())


def predict_fn(rows, model):
    """Probability of churn for each row of feature values."""
    out = []
    for row in rows:
        z = model["intercept"] + sum(c * x for c, x in zip(model["coefficients"], row, strict=True))
        out.append(1 / (1 + math.exp(-z)))
    return out
