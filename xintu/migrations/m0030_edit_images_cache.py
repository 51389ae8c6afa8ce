"""Image edit: uploaded photos in ≤ 4 MB pieces (edit_images) and the result cache (edit_cache)."""


def up(db, migrator):
    from xintu.models import EditCache, EditImage

    with db.bind_ctx([EditImage, EditCache]):
        db.create_tables([EditImage, EditCache], safe=True)
