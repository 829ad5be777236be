# Tern's image: every binary of ./bin (make build: nsqd, nsqlookupd, nsqadmin, the tools, the
# examples and the container helpers) in / of an empty image, as NSQ's image holds its
# binaries. It is built FROM scratch because the binaries are static (CGO_ENABLED=0) and
# because no base image can be pulled where Tern is built; `make image` builds ./bin first.

# The holder of the compose cluster's network namespace, in an image of its own: it changes
# only when tern-pause does, so rebuilding Tern does not recreate it (and with it the network
# every daemon has joined). docker-compose.yml builds it with target pause.
FROM scratch AS pause
LABEL org.ternmq.image=tern-pause
COPY bin/tern-pause /
USER 65532:65532
ENTRYPOINT ["/tern-pause"]

# The image of every daemon, tool and example: the default target, the last stage.
FROM scratch AS tern
# make up removes the images of earlier builds that this label marks (contrib/compose.sh).
LABEL org.ternmq.image=tern
COPY bin/ /
# nsqd's data directory, owned by the user the daemons run as: a named volume mounted here
# starts as a copy of it, owner included, so the daemons need no root.
COPY --chown=65532:65532 contrib/docker/data/ /data/
USER 65532:65532
WORKDIR /data

# nsqd TCP, HTTP; nsqlookupd TCP, HTTP; nsqadmin HTTP.
EXPOSE 4150 4151 4160 4161 4171
