"""Customer segmentation: RFM segments as the classic baseline, K-means behavioural segments with a
chosen k, profiles, readable names, stability and migration between dates."""

from crmlab.pipelines import lazy_exports

_EXPORTS = {
    "FeatureScaler": "crmlab.segmentation.models",
    "choose_k": "crmlab.segmentation.models",
    "fit_kmeans": "crmlab.segmentation.models",
    "nearest_centre": "crmlab.segmentation.models",
    "stability": "crmlab.segmentation.models",
    "sweep_k": "crmlab.segmentation.models",
    "migration_matrix": "crmlab.segmentation.profiles",
    "name_segments": "crmlab.segmentation.profiles",
    "percentile_profile": "crmlab.segmentation.profiles",
    "profile_segments": "crmlab.segmentation.profiles",
    "NO_PURCHASE": "crmlab.segmentation.rfm",
    "RfmScorer": "crmlab.segmentation.rfm",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
