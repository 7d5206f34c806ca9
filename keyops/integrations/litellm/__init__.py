"""keyops in a LiteLLM proxy: the custom-auth hook and the usage mapping.

* ``keyops.integrations.litellm.usage`` maps LiteLLM's standard logging
  payload to keyops' usage event. It imports nothing from LiteLLM, so the
  daemon uses it without LiteLLM installed.
* ``keyops.integrations.litellm.auth.user_api_key_auth`` is the custom-auth
  hook (``general_settings: custom_auth: keyops.integrations.litellm.auth.user_api_key_auth``);
  it imports LiteLLM when first called, inside the proxy.
"""
