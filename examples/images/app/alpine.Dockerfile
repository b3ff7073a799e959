# The small variant of the stand-in service, picked by the image-variants plugin in test and ci (the role
# `backend.alpine.Dockerfile` plays in seed 001). No Alpine image can be pulled here, so it is the same program linked
# statically on an empty base: about 1% of the regular image. `app-static` is copied here by examples/images/build.sh.
FROM scratch
# A static glibc resolves service names through files and DNS only when nsswitch.conf says so.
COPY etc/nsswitch.conf /etc/nsswitch.conf
COPY app-static /app
ENTRYPOINT ["/app"]
CMD ["serve"]
