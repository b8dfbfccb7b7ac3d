"""An index on the key id of stored encrypted vectors: the keys page counts vectors per key and a key may
only retire once no vector uses it; without it both read the whole store."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("datadomain", "0003_resource_id_primary_keys"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="encryptedfeaturevector",
            index=models.Index(fields=["key_id"], name="dd_encfeat_key"),
        ),
    ]
