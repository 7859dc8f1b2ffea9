from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keys_app', '0002_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='key',
            name='pre_deletion_state',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.AddField(
            model_name='key',
            name='region',
            field=models.CharField(default='fr-par', max_length=16),
        ),
    ]
