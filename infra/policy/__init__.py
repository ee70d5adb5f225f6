"""The policy pack: rules over rendered resources, plus a monthly cost estimate from a dated price table.

The same rules run under CrossGuard (`pulumi up --policy-pack infra/policy`) and in `mlinfra check` on the offline
render. `engine` holds the machinery (Rule, Context, evaluate), `storage`/`compute`/`access` the rules (`rules`
imports them all), `cost` the estimate. The pack's entry point for the Pulumi engine is `__main__.py` here.
"""
