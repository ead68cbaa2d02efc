"""Campaigns: grids of trial scenarios over a base spec, one Zarr hierarchy, resumable."""
from insilico.campaigns._run import run_campaign
from insilico.campaigns._spec import CampaignSpec, load_campaign_spec, scenarios

__all__ = ["run_campaign", "CampaignSpec", "load_campaign_spec", "scenarios"]
