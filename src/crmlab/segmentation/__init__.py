"""Customer segmentation: RFM segments as the classic baseline, K-means behavioural segments with a
chosen k, profiles, readable names, stability and migration between dates."""

from crmlab.segmentation.models import FeatureScaler, choose_k, fit_kmeans, nearest_centre, stability, sweep_k
from crmlab.segmentation.profiles import migration_matrix, name_segments, percentile_profile, profile_segments
from crmlab.segmentation.rfm import NO_PURCHASE, RfmScorer

__all__ = [
    "NO_PURCHASE",
    "FeatureScaler",
    "RfmScorer",
    "choose_k",
    "fit_kmeans",
    "migration_matrix",
    "name_segments",
    "nearest_centre",
    "percentile_profile",
    "profile_segments",
    "stability",
    "sweep_k",
]
