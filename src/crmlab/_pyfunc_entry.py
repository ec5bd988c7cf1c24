"""Model code logged with every crmlab pyfunc model (MLflow models-from-code); see crmlab.pyfunc."""

from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd


class CrmlabModel(mlflow.pyfunc.PythonModel):
    """Loads the exported bundle (JSON/text/arrays, never pickles) and scores with its pipeline."""

    def load_context(self, context):
        from crmlab.export import load_bundle
        from crmlab.pyfunc import get_scorer

        self.bundle = load_bundle(context.artifacts["bundle"])
        self.scorer = get_scorer(self.bundle.pipeline)

    # a DataFrame in, a DataFrame out: MLflow checks the input against the logged signature
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.scorer(model_input, self.bundle)


mlflow.models.set_model(CrmlabModel())
