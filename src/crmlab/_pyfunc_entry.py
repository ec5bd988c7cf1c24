"""Model code logged with every crmlab pyfunc model (MLflow models-from-code); see crmlab.pyfunc."""

import mlflow
import mlflow.pyfunc


class CrmlabModel(mlflow.pyfunc.PythonModel):
    """Loads the exported bundle (JSON/text/arrays, never pickles) and scores with its pipeline."""

    def load_context(self, context):
        from crmlab.export import load_bundle
        from crmlab.pyfunc import get_scorer

        self.bundle = load_bundle(context.artifacts["bundle"])
        self.scorer = get_scorer(self.bundle.pipeline)

    def predict(self, context, model_input, params=None):
        return self.scorer(model_input, self.bundle)


mlflow.models.set_model(CrmlabModel())
