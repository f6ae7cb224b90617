"""The AIPM CDK app (run as `python -m cdk.app`); constructs live in `cdk.aipm_cdk`."""
