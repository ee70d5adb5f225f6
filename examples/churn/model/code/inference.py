"""SageMaker inference handler for the example churn model (a logistic regression stored as JSON).

Rows are `tenure_months,monthly_charges,support_calls,plan` (the plan a name: basic, plus or pro; it may be left
off), as CSV lines or a JSON list of lists, the columns of examples/churn/baseline.csv. An empty number (or JSON
null) is a missing value, scored with the training mean model.json gives for it. The container's default
decoder reads CSV as numbers only, so this handler decodes its own input; its answers are encoded by the container
(one churn probability per row).
"""

import json
import math
from pathlib import Path

NUMERIC = 3


def model_fn(model_dir):
    """Load the model from the directory SageMaker unpacks model.tar.gz into."""
    return json.loads((Path(model_dir) / "model.json").read_text())


def input_fn(body, content_type):
    """Rows of (tenure_months, monthly_charges, support_calls[, plan]) from CSV or JSON."""
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else str(body)
    if content_type.startswith("application/json"):
        rows = json.loads(text)
    elif content_type.startswith("text/csv"):
        rows = [line.split(",") for line in text.splitlines() if line.strip()]
    else:
        raise ValueError(f"unsupported content type {content_type}: send text/csv or application/json")
    parsed = []
    for row in rows:
        if len(row) not in (NUMERIC, NUMERIC + 1):
            raise ValueError(f"a row has {len(row)} values: send tenure_months,monthly_charges,support_calls[,plan]")
        plan = str(row[NUMERIC]).strip() if len(row) > NUMERIC else None
        values = [None if value is None or str(value).strip() == "" else float(value) for value in row[:NUMERIC]]
        parsed.append((values, plan))
    return parsed


def predict_fn(rows, model):
    """Probability of churn for each row."""
    out = []
    for values, plan in rows:
        filled = [fill if x is None else x for x, fill in zip(values, model["missing"], strict=True)]
        z = model["intercept"] + sum(c * x for c, x in zip(model["coefficients"], filled, strict=True))
        z += model["plan"].get(plan, 0.0) if plan else 0.0
        out.append(1 / (1 + math.exp(-z)))
    return out
