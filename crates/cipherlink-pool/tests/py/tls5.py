"""The TLS contexts a tno.mpc.communication 5.x party is given.

5.x takes ready-made ssl contexts: mutual TLS against one CA, and no host
name check on the client (parties are addressed by IP and identified by
their certificate's issuer and serial). The interop and benchmark parties
both build them here.
"""
import ssl


def package_contexts(cert, key, ca):
    """(client context, server context) for a party holding cert/key."""
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    client_ctx.load_cert_chain(cert, key)
    client_ctx.check_hostname = False
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    return client_ctx, server_ctx
